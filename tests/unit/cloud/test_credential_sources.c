// The profile sources that need no server: credential_process's command split (as
// Python's shlex.split splits it: the expected words below are shlex's), its JSON
// contract, running real programs with a timeout, and the SSO token cache's file names
// (SHA-1 values computed with Python's hashlib, as botocore names the files).
#include "check.h"

#include "runner/cloud/aws.h"
#include "runner/error.h"
#include "runner/log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int count_words(char **words) {
    int n = 0;
    while (words && words[n]) n++;
    return n;
}

static void test_split_as_shlex(void) {
    char **w = NULL;
    CHECK_INT(aws_command_split("/bin/helper plain \"two words\" 'single $HOME' a\\ b "
                                "\"q\\\"x\\\\y\\z\" '' \"\"",
                                &w),
              0);
    CHECK_INT(count_words(w), 8);
    if (count_words(w) == 8) {
        CHECK_STR(w[0], "/bin/helper");
        CHECK_STR(w[1], "plain");
        CHECK_STR(w[2], "two words");
        CHECK_STR(w[3], "single $HOME"); // no variable expansion
        CHECK_STR(w[4], "a b");
        CHECK_STR(w[5], "q\"x\\y\\z"); // in "...", \ escapes only " and \ (shlex)
        CHECK_STR(w[6], "");
        CHECK_STR(w[7], "");
    }
    aws_command_free(w);

    // Words glued to quotes, tabs and repeated blanks, and what a shell would interpret.
    CHECK_INT(aws_command_split("  a\"b c\"'d'\t\tx;y  *  ~ $(id) | ", &w), 0);
    CHECK_INT(count_words(w), 6);
    if (count_words(w) == 6) {
        CHECK_STR(w[0], "ab cd");
        CHECK_STR(w[1], "x;y");
        CHECK_STR(w[2], "*");
        CHECK_STR(w[3], "~");
        CHECK_STR(w[4], "$(id)");
        CHECK_STR(w[5], "|");
    }
    aws_command_free(w);

    CHECK_INT(aws_command_split("helper 'open", &w), EXIT_USAGE);
    CHECK(w == NULL);
    CHECK_INT(aws_command_split("helper \"open", &w), EXIT_USAGE);
    CHECK_INT(aws_command_split("helper trailing\\", &w), EXIT_USAGE);
    CHECK_INT(aws_command_split("   ", &w), EXIT_USAGE);
    CHECK(strstr(error_message(), "empty") != NULL);
    error_clear();
}

static void test_process_output_contract(void) {
    aws_credentials c;
    const char *full = "{\"Version\": 1, \"AccessKeyId\": \"ASIAPROC\", \"SecretAccessKey\": "
                       "\"proc-secret\", \"SessionToken\": \"proc-token\", \"Expiration\": "
                       "\"2026-12-03T21:00:00Z\"}";
    CHECK_INT(aws_credentials_from_process_output(full, strlen(full), "t", &c), 0);
    CHECK_STR(c.access_key, "ASIAPROC");
    CHECK_STR(c.secret_key, "proc-secret");
    CHECK_STR(c.token, "proc-token");
    CHECK_INT((long long)c.expiration, 1796331600LL);

    const char *keys_only = "{\"Version\":1,\"AccessKeyId\":\"AKIA1\",\"SecretAccessKey\":\"s\"}";
    CHECK_INT(aws_credentials_from_process_output(keys_only, strlen(keys_only), "t", &c), 0);
    CHECK_STR(c.token, "");
    CHECK_INT((long long)c.expiration, 0); // long-term keys: never refreshed

    struct {
        const char *text, *reason;
    } bad[] = {
        {"AKIA secret-do-not-log", "not a JSON object"},
        {"[1]", "not a JSON object"},
        {"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"secret-do-not-log\"}", "Version"},
        {"{\"Version\":2,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\"}", "Version"},
        {"{\"Version\":\"1\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\"}", "Version"},
        {"{\"Version\":1,\"SecretAccessKey\":\"secret-do-not-log\"}", "AccessKeyId"},
        {"{\"Version\":1,\"AccessKeyId\":\"A\"}", "SecretAccessKey"},
        {"{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"SessionToken\":5}",
         "SessionToken"},
        {"{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\","
         "\"Expiration\":\"soon\"}",
         "Expiration"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(aws_credentials_from_process_output(bad[i].text, strlen(bad[i].text), "proc",
                                                      &c),
                  EXIT_USAGE);
        CHECK(strstr(error_message(), bad[i].reason) != NULL);
        CHECK(strstr(error_message(), "do-not-log") == NULL); // never the output itself
        CHECK_STR(c.secret_key, "");
    }
    error_clear();
}

static void test_running_programs(void) {
    aws_credentials c;
    // A real program, its words passed as they are (no shell would keep the quotes).
    CHECK_INT(aws_credential_process(
                  "unit", "/bin/sh -c 'printf \"%s\" \"$0\"' "
                          "'{\"Version\":1,\"AccessKeyId\":\"AKIASH\",\"SecretAccessKey\":\"x y\"}'",
                  &c),
              0);
    CHECK_STR(c.access_key, "AKIASH");
    CHECK_STR(c.secret_key, "x y");

    CHECK_INT(aws_credential_process("unit", "/bin/sh -c 'exit 3'", &c), EXIT_USAGE);
    CHECK(strstr(error_message(), "exited with status 3") != NULL);
    CHECK(strstr(error_message(), "AWS profile unit") != NULL);
    CHECK_INT(aws_credential_process("unit", "/nonexistent/helper --flag", &c), EXIT_USAGE);
    CHECK(strstr(error_message(), "cannot run it") != NULL);
    CHECK(strstr(error_message(), "--flag") == NULL); // arguments are not repeated

    // A flood is cut at 256 KiB, the program stopped (head would otherwise block).
    CHECK_INT(aws_credential_process("unit", "/bin/sh -c 'head -c 300000 /dev/zero; sleep 20'",
                                     &c),
              EXIT_USAGE);
    CHECK(strstr(error_message(), "printed more than 262144 bytes") != NULL);

    setenv("RUNNER_AWS_CREDENTIAL_PROCESS_TIMEOUT_S", "1", 1);
    time_t start = time(NULL);
    CHECK_INT(aws_credential_process("unit", "/bin/sleep 20", &c), EXIT_REMOTE_IO);
    CHECK(time(NULL) - start <= 3);
    CHECK(strstr(error_message(), "no answer within 1 s") != NULL);
    unsetenv("RUNNER_AWS_CREDENTIAL_PROCESS_TIMEOUT_S");
    error_clear();
}

static void test_sso_cache_names(void) {
    char name[46];
    sso_cache_file_name("my-sso", name);
    CHECK_STR(name, "0ad374308c5a4e22f723adf10145eafad7c4031c.json");
    sso_cache_file_name("https://my-sso-portal.awsapps.com/start", name);
    CHECK_STR(name, "c7aaaf71fcc8777ae2475525ed049d39fe16c484.json");
}

int main(void) {
    log_init(LOG_FORMAT_JSON, LOG_ERROR);
    test_split_as_shlex();
    test_process_output_contract();
    test_running_programs();
    test_sso_cache_names();
    return check_summary();
}
