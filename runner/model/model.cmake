# runner/model/tokenizer_bpe.c matches GPT-2's pre-tokenizer pattern with PCRE2 (found in
# the top-level CMakeLists.txt; Debian: libpcre2-dev).
target_link_libraries(runner_lib PUBLIC PkgConfig::PCRE2)
