# GPU tests (tests/gpu), built only with the CUDA backend:
# - gpu_check_ptxas: no register spills or local memory in any kernel (no GPU needed;
#   reads the ptxas reports recorded while runner_cuda compiled).
# - gpu_ops: every CUDA op against the CPU op, then the model; exits 77 (skipped) when no
#   GPU is visible. scripts/gpu-test runs it, and the benchmark, in one command.
# The spill check's own test: synthetic ptxas reports, no CUDA needed.
add_test(NAME gpu_check_ptxas_selftest COMMAND ${CMAKE_CURRENT_LIST_DIR}/check_ptxas_selftest.sh)
set_tests_properties(gpu_check_ptxas_selftest PROPERTIES LABELS gpu TIMEOUT 60)

if(NOT RUNNER_HAVE_CUDA)
  return()
endif()

add_test(NAME gpu_check_ptxas
  COMMAND ${CMAKE_SOURCE_DIR}/scripts/check-ptxas ${RUNNER_PTXAS_LOG_DIR})
set_tests_properties(gpu_check_ptxas PROPERTIES LABELS gpu TIMEOUT 60)

add_executable(test_gpu_ops ${CMAKE_CURRENT_LIST_DIR}/test_gpu_ops.c
  ${CMAKE_CURRENT_LIST_DIR}/gpu_model.c)
target_compile_options(test_gpu_ops PRIVATE ${RUNNER_WARNINGS})
target_include_directories(test_gpu_ops PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../unit)
target_link_libraries(test_gpu_ops PRIVATE runner_lib)
add_dependencies(test_gpu_ops runner_cuda)  # the CUDA backend module it loads at run time
# The model part joins once runner/model/bert.c exists (it is written in parallel).
if(EXISTS ${CMAKE_SOURCE_DIR}/runner/model/bert.c)
  target_compile_definitions(test_gpu_ops PRIVATE GPU_TEST_MODEL=1)
endif()
set_target_properties(test_gpu_ops PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_test(NAME gpu_ops COMMAND test_gpu_ops WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(gpu_ops PROPERTIES LABELS gpu TIMEOUT 600 SKIP_RETURN_CODE 77)
