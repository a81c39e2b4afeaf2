# Fuzz targets for the parsers of untrusted files: the safetensors header and the
# tokenizers (WordPiece: vocab.txt and text; byte-level BPE: vocab.json, merges.txt, text).
# Always built; CTest runs a short smoke of each (below); real fuzzing is a separate command.
# They compile only the code under test (plus runner/error.c), not all of runner_lib,
# so a fuzzing build with clang does not depend on the rest of the tree.
#   - default: linked with tests/fuzz/fuzz_main.c, a driver that replays files or runs
#     N mutations of built-in seeds:  build/<dir>/fuzz/fuzz_tokenizer --random 100000
#   - RUNNER_FUZZ=ON with clang: real libFuzzer with coverage, ASan and UBSan:
#     CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DRUNNER_FUZZ=ON -DRUNNER_CUDA=OFF
#     cmake --build build/fuzz --target fuzz_safetensors fuzz_tokenizer fuzz_tokenizer_bpe
#     build/fuzz/fuzz/fuzz_safetensors -max_total_time=600 corpus_dir/
option(RUNNER_FUZZ "Link the fuzz targets with libFuzzer (clang only)" OFF)
if(RUNNER_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "RUNNER_FUZZ=ON needs clang (CC=clang CXX=clang++)")
endif()

set(FUZZ_SOURCES_fuzz_safetensors ${CMAKE_SOURCE_DIR}/runner/model/safetensors.c)
set(FUZZ_SOURCES_fuzz_tokenizer ${CMAKE_SOURCE_DIR}/runner/model/tokenizer.c
  ${CMAKE_SOURCE_DIR}/runner/model/tokenizer_bpe.c)
set(FUZZ_SOURCES_fuzz_tokenizer_bpe ${FUZZ_SOURCES_fuzz_tokenizer})
foreach(name fuzz_safetensors fuzz_tokenizer fuzz_tokenizer_bpe)
  add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${name}.c ${FUZZ_SOURCES_${name}}
    ${CMAKE_SOURCE_DIR}/runner/error.c)
  if(RUNNER_FUZZ)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  else()
    target_sources(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_main.c)
  endif()
  target_compile_options(${name} PRIVATE ${RUNNER_WARNINGS})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR} ${CJSON_INCLUDE_DIR})
  target_link_libraries(${name} PRIVATE PkgConfig::UTF8PROC PkgConfig::PCRE2 ${CJSON_LIBRARY} m)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  if(NOT RUNNER_FUZZ)
    # A smoke run in CTest (2,000 deterministic mutations of the seeds, about a second;
    # under the asan preset with ASan + UBSan): a regression in a parser shows in CI.
    # Real fuzzing stays a separate command (docs/tokenizer.md).
    add_test(NAME ${name}_smoke COMMAND ${name} --random 2000)
    set_tests_properties(${name}_smoke PROPERTIES TIMEOUT 120 LABELS fuzz)
  endif()
endforeach()
