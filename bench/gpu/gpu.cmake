# bench_gpu (bench/gpu): bert-base training and inference on the CUDA backend, with the
# time per op. Built with the CUDA backend only; run by scripts/gpu-test.
if(NOT RUNNER_HAVE_CUDA OR NOT EXISTS ${CMAKE_SOURCE_DIR}/runner/model/bert.c)
  return()
endif()
add_executable(bench_gpu ${CMAKE_CURRENT_LIST_DIR}/bench_gpu.c)
target_compile_options(bench_gpu PRIVATE ${RUNNER_WARNINGS})
target_link_libraries(bench_gpu PRIVATE runner_lib CUDA::cudart)
add_dependencies(bench_gpu runner_cuda)  # the CUDA backend module it loads at run time
set_target_properties(bench_gpu PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
