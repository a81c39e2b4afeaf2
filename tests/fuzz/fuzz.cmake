# Fuzz targets for the parsers of untrusted input (docs/faults.md, "Fuzzing"):
#   fuzz_safetensors     a safetensors file (header JSON, offsets, dtypes)
#   fuzz_tokenizer       vocab.txt and a text (WordPiece)
#   fuzz_tokenizer_bpe   vocab.json, merges.txt and a text (byte-level BPE)
#   fuzz_tokenizer_json  tokenizer_config.json, tokenizer.json and a text
#   fuzz_config          a --config file's JSON, or one option's text (flag, RUNNER_*)
#   fuzz_hyperspace      a hyperspace.json, chosen and sampled into trials
#   fuzz_csv             a dataset.csv: the RFC 4180 reader and the dataset rows
#   fuzz_http_path       a request's method and target, routed as the servers do
# Always built; CTest runs a short smoke of each (below); real fuzzing is scripts/fuzz.
# They compile only the code under test (plus runner/error.c), not all of runner_lib,
# so a fuzzing build with clang does not depend on the rest of the tree.
#   - default: linked with tests/fuzz/fuzz_main.c, a driver that replays files and
#     directories or runs N mutations of built-in seeds:
#     build/<dir>/fuzz/fuzz_csv --random 100000 tests/fuzz/corpus/fuzz_csv
#   - RUNNER_FUZZ=ON with clang: real libFuzzer with coverage, ASan and UBSan:
#     CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DRUNNER_FUZZ=ON -DRUNNER_CUDA=OFF
#     cmake --build build/fuzz --target fuzz_all
#     build/fuzz/fuzz/fuzz_csv -max_total_time=600 NEW_DIR tests/fuzz/corpus/fuzz_csv
option(RUNNER_FUZZ "Link the fuzz targets with libFuzzer (clang only)" OFF)
if(RUNNER_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "RUNNER_FUZZ=ON needs clang (CC=clang CXX=clang++)")
endif()

set(FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
set(RUNNER_DIR ${CMAKE_SOURCE_DIR}/runner)
set(FUZZ_TARGETS fuzz_safetensors fuzz_tokenizer fuzz_tokenizer_bpe fuzz_tokenizer_json
  fuzz_config fuzz_hyperspace fuzz_csv fuzz_http_path)

# The dashboard's asset table, generated for fuzz_http_path as runner/serve/serve.cmake
# does for the binary (route.c looks paths up in it).
get_property(FUZZ_ASSET_SPEC GLOBAL PROPERTY RUNNER_SERVE_ASSET_SPEC)
get_property(FUZZ_ASSET_FILES GLOBAL PROPERTY RUNNER_SERVE_ASSET_FILES)
set(FUZZ_ASSETS_C ${CMAKE_CURRENT_BINARY_DIR}/fuzz_serve_assets.c)
add_custom_command(OUTPUT ${FUZZ_ASSETS_C}
  COMMAND ${CMAKE_COMMAND} -DOUT=${FUZZ_ASSETS_C} "-DASSETS=${FUZZ_ASSET_SPEC}"
          -P ${RUNNER_DIR}/serve/embed.cmake
  DEPENDS ${FUZZ_ASSET_FILES} ${RUNNER_DIR}/serve/embed.cmake
  COMMENT "Embedding the dashboard assets (fuzz_http_path)"
  VERBATIM)

set(FUZZ_SOURCES_fuzz_safetensors ${RUNNER_DIR}/model/safetensors.c)
set(FUZZ_SOURCES_fuzz_tokenizer ${RUNNER_DIR}/model/tokenizer.c
  ${RUNNER_DIR}/model/tokenizer_files.c ${RUNNER_DIR}/model/tokenizer_bpe.c)
set(FUZZ_SOURCES_fuzz_tokenizer_bpe ${FUZZ_SOURCES_fuzz_tokenizer})
set(FUZZ_SOURCES_fuzz_tokenizer_json ${FUZZ_SOURCES_fuzz_tokenizer})
set(FUZZ_SOURCES_fuzz_config ${RUNNER_DIR}/config.c ${RUNNER_DIR}/units.c)
# files.c's atomic writes hold test-only fault points (runner/fault.c, off unless
# RUNNER_FAULT is set): the real module is linked, with what it needs.
set(FUZZ_FILES_SOURCES ${RUNNER_DIR}/job/files.c ${RUNNER_DIR}/fault.c ${RUNNER_DIR}/signals.c
  ${RUNNER_DIR}/model/safetensors.c ${RUNNER_DIR}/log.c)
set(FUZZ_SOURCES_fuzz_hyperspace ${RUNNER_DIR}/job/space.c ${RUNNER_DIR}/job/trials.c
  ${FUZZ_FILES_SOURCES})
set(FUZZ_SOURCES_fuzz_csv ${RUNNER_DIR}/job/csv.c ${RUNNER_DIR}/job/dataset.c
  ${FUZZ_FILES_SOURCES})
set(FUZZ_SOURCES_fuzz_http_path ${RUNNER_DIR}/serve/route.c ${FUZZ_ASSETS_C})
set(FUZZ_LIBS_fuzz_tokenizer PkgConfig::UTF8PROC PkgConfig::PCRE2)
set(FUZZ_LIBS_fuzz_tokenizer_bpe ${FUZZ_LIBS_fuzz_tokenizer})
set(FUZZ_LIBS_fuzz_tokenizer_json ${FUZZ_LIBS_fuzz_tokenizer})
set(FUZZ_LIBS_fuzz_hyperspace z)
set(FUZZ_LIBS_fuzz_csv z Threads::Threads)
set(FUZZ_LIBS_fuzz_http_path PkgConfig::MHD)

add_custom_target(fuzz_all)
foreach(name ${FUZZ_TARGETS})
  add_executable(${name} ${FUZZ_DIR}/${name}.c ${FUZZ_SOURCES_${name}} ${RUNNER_DIR}/error.c)
  add_dependencies(fuzz_all ${name})
  if(RUNNER_FUZZ)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  else()
    target_sources(${name} PRIVATE ${FUZZ_DIR}/fuzz_main.c)
  endif()
  target_compile_options(${name} PRIVATE ${RUNNER_WARNINGS})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR} ${CJSON_INCLUDE_DIR})
  target_link_libraries(${name} PRIVATE ${FUZZ_LIBS_${name}} ${CJSON_LIBRARY} m)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  if(NOT RUNNER_FUZZ)
    # A smoke run in CTest: 2,000 deterministic mutations of the seeds, then every file of
    # the committed corpus (the inputs fuzzing found interesting, and each input that
    # once crashed: a regression test), a second or so; under the asan preset with ASan +
    # UBSan. Real fuzzing stays a separate command (scripts/fuzz, docs/faults.md).
    add_test(NAME ${name}_smoke
      COMMAND ${name} --random 2000 ${FUZZ_DIR}/corpus/${name})
    set_tests_properties(${name}_smoke PROPERTIES TIMEOUT 120 LABELS fuzz)
  endif()
endforeach()
