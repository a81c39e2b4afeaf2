# The job's checkpoint manifests use zlib's CRC-32.
target_link_libraries(runner_lib PUBLIC z)
