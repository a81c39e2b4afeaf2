# Helper programs the Python tests drive (built with the tree, not run by CTest).
# Each is tests/tools/<name>.c linked against runner_lib, placed in ${CMAKE_BINARY_DIR}/tools,
# so a test finds it beside RUNNER_BIN: $(dirname $RUNNER_BIN)/tools/<name>.
function(runner_test_tool name)
  add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/tools/${name}.c)
  target_compile_options(${name} PRIVATE ${RUNNER_WARNINGS})
  target_link_libraries(${name} PRIVATE runner_lib)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tools)
endfunction()

# tokenizer and safetensors (tests/integration/test_tokenizer*.py, test_safetensors*.py)
runner_test_tool(tokenize_tool)
runner_test_tool(safetensors_tool)
runner_test_tool(minilm_embed)

# AWS client: S3, credentials, spot watcher, Step Functions, ECS (tests/integration/test_aws_*.py)
runner_test_tool(aws_tool)

# HTTP servers with synthetic telemetry (tests/integration/test_serve_*.py, bench of overhead)
runner_test_tool(serve_demo)

# BERT model against transformers (tests/integration/test_model_torch.py)
runner_test_tool(bert_torch_tool)

# coordination (tests/integration/test_coord_*.py)
runner_test_tool(coord_node)

# a Hub checkpoint loaded into the token-classification model (tests/integration/test_hub.py)
runner_test_tool(hub_logits)
