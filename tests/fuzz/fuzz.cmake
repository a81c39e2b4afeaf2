# Fuzz targets for the parsers of untrusted files: the safetensors header and the
# tokenizer (vocabulary and text). Always built (CI checks they compile); not run by CTest.
#   - default: linked with tests/fuzz/fuzz_main.c, a driver that replays files or runs
#     N mutations of built-in seeds:  build/<dir>/fuzz/fuzz_tokenizer --random 100000
#   - RUNNER_FUZZ=ON with clang: real libFuzzer with coverage, ASan and UBSan:
#     CC=clang CXX=clang++ cmake -S . -B build/fuzz -DRUNNER_FUZZ=ON -DRUNNER_CUDA=OFF
#     build/fuzz/fuzz/fuzz_safetensors -max_total_time=600 corpus_dir/
option(RUNNER_FUZZ "Link the fuzz targets with libFuzzer (clang only)" OFF)
if(RUNNER_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "RUNNER_FUZZ=ON needs clang (CC=clang CXX=clang++)")
endif()
if(RUNNER_FUZZ)
  # Coverage for the library code under test, too.
  target_compile_options(runner_lib PRIVATE -fsanitize=fuzzer-no-link,address,undefined)
endif()

foreach(name fuzz_safetensors fuzz_tokenizer)
  if(RUNNER_FUZZ)
    add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${name}.c)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  else()
    add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${name}.c
      ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_main.c)
  endif()
  target_compile_options(${name} PRIVATE ${RUNNER_WARNINGS})
  target_link_libraries(${name} PRIVATE runner_lib)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endforeach()
