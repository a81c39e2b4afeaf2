# runner/cloud hashes S3 payloads (x-amz-content-sha256) with OpenSSL's libcrypto,
# which libcurl already depends on (Debian: libssl-dev).
pkg_check_modules(LIBCRYPTO REQUIRED IMPORTED_TARGET libcrypto)
target_link_libraries(runner_lib PUBLIC PkgConfig::LIBCRYPTO)
# The AWS CLI's shared files (~/.aws/credentials, ~/.aws/config) are INI: read with
# inih (Debian: libinih-dev).
pkg_check_modules(INIH REQUIRED IMPORTED_TARGET inih)
target_link_libraries(runner_lib PUBLIC PkgConfig::INIH)
