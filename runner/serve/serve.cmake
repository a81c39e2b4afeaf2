# The dashboard's files are compiled into the binary (no CDN; works offline): the page,
# its script and style, and Chart.js from Debian's libjs-chart.js. Included by
# runner/CMakeLists.txt.
set(RUNNER_CHARTJS "/usr/share/javascript/chart.js/chart.min.js" CACHE FILEPATH
    "Chart.js UMD build to embed in the dashboard (Debian package libjs-chart.js)")
if(NOT EXISTS "${RUNNER_CHARTJS}")
  message(FATAL_ERROR "Chart.js not found at ${RUNNER_CHARTJS}: apt-get install libjs-chart.js "
                      "(scripts/setup does) or set -DRUNNER_CHARTJS=path/to/chart.umd.min.js")
endif()
set(SERVE_DIR ${CMAKE_CURRENT_SOURCE_DIR}/serve)
set(SERVE_ASSETS_C ${CMAKE_BINARY_DIR}/generated/serve_assets.c)
set(SERVE_ASSET_FILES ${SERVE_DIR}/dashboard.html ${SERVE_DIR}/dashboard.js
    ${SERVE_DIR}/dashboard.css ${SERVE_DIR}/favicon.svg ${RUNNER_CHARTJS})
# Entries "url|media type|file", separated by commas (a semicolon would split the CMake
# list, so embed.cmake adds the "; charset=utf-8").
set(SERVE_ASSET_SPEC
    "/|text/html|${SERVE_DIR}/dashboard.html,/assets/dashboard.js|text/javascript|${SERVE_DIR}/dashboard.js,/assets/dashboard.css|text/css|${SERVE_DIR}/dashboard.css,/assets/favicon.svg|image/svg+xml|${SERVE_DIR}/favicon.svg,/assets/chart.umd.min.js|text/javascript|${RUNNER_CHARTJS}")
# tests/fuzz/fuzz.cmake embeds the same table for fuzz_http_path.
set_property(GLOBAL PROPERTY RUNNER_SERVE_ASSET_SPEC "${SERVE_ASSET_SPEC}")
set_property(GLOBAL PROPERTY RUNNER_SERVE_ASSET_FILES ${SERVE_ASSET_FILES})
add_custom_command(OUTPUT ${SERVE_ASSETS_C}
  COMMAND ${CMAKE_COMMAND} -DOUT=${SERVE_ASSETS_C} "-DASSETS=${SERVE_ASSET_SPEC}"
          -P ${SERVE_DIR}/embed.cmake
  DEPENDS ${SERVE_ASSET_FILES} ${SERVE_DIR}/embed.cmake
  COMMENT "Embedding the dashboard assets"
  VERBATIM)
target_sources(runner_lib PRIVATE ${SERVE_ASSETS_C})
