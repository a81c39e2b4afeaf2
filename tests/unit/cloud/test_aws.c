// runner/cloud pieces that need no server: URI parsing, SigV4 percent-encoding,
// payload hashes, region and endpoint resolution, full-jitter backoff bounds, the
// environment step of the credentials chain, XML answers, token files and timestamps,
// and retries against a closed port.
#include "check.h"

#include "runner/cloud/aws.h"
#include "runner/cloud/cloud.h"
#include "runner/cloud/s3.h"
#include "runner/error.h"
#include "runner/log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void test_uris(void) {
    s3_location loc;
    CHECK_INT(s3_parse_uri("s3://my-bucket/a/b/c.csv", &loc), 0);
    CHECK_STR(loc.bucket, "my-bucket");
    CHECK_STR(loc.key, "a/b/c.csv");
    CHECK_INT(s3_parse_uri("s3://my.bucket", &loc), 0);
    CHECK_STR(loc.key, "");
    CHECK_INT(s3_parse_uri("s3://ab/x", &loc), EXIT_USAGE);       // too short
    CHECK_INT(s3_parse_uri("s3://Bad_Bucket/x", &loc), EXIT_USAGE);
    CHECK_INT(s3_parse_uri("https://b/x", &loc), EXIT_USAGE);
    CHECK(cloud_is_remote("s3://b/k"));
    CHECK(!cloud_is_remote("/data/train.csv"));
    CHECK(!cloud_is_remote(NULL));
    CHECK_INT(cloud_fetch("/local/file", "/tmp/never-written"), 0);
    CHECK(access("/tmp/never-written", F_OK) != 0);
    CHECK_INT(cloud_fetch("s3://bucket/prefix/", "/tmp/x"), EXIT_USAGE);
    error_clear();
}

static void test_encoding_and_hashes(void) {
    char *e = aws_uri_encode("a b/c+d~e_f.g-h%", true);
    CHECK_STR(e, "a%20b/c%2Bd~e_f.g-h%25");
    free(e);
    e = aws_uri_encode("x/y=z&", false);
    CHECK_STR(e, "x%2Fy%3Dz%26");
    free(e);
    e = aws_uri_encode("\xc3\xa9", false); // UTF-8 bytes, upper-case hex
    CHECK_STR(e, "%C3%A9");
    free(e);

    char hex[65];
    aws_sha256_hex("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    aws_sha256_hex("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    // The file variant over a region (offset 3, 3 bytes of "xyzabcxyz" = "abc").
    char path[] = "/tmp/runner_test_aws_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_INT(write(fd, "xyzabcxyz", 9), 9);
    CHECK_INT(aws_sha256_file_hex(fd, 3, 3, hex), 0);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(aws_sha256_file_hex(fd, 3, 100, hex) != 0); // past the end: an error, not a hash
    close(fd);
    unlink(path);
}

static void test_region_and_endpoints(void) {
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    CHECK_STR(aws_region(), "us-east-1");
    setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
    CHECK_STR(aws_region(), "eu-west-1");
    setenv("AWS_REGION", "eu-central-1", 1); // AWS_REGION wins, as in the SDKs
    CHECK_STR(aws_region(), "eu-central-1");

    char url[256];
    bool over = true;
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_SFN");
    aws_endpoint("SFN", "states", url, sizeof url, &over);
    CHECK_STR(url, "https://states.eu-central-1.amazonaws.com");
    CHECK(!over);
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000/", 1);
    aws_endpoint("SFN", "states", url, sizeof url, &over);
    CHECK_STR(url, "http://127.0.0.1:5000");
    CHECK(over);
    setenv("AWS_ENDPOINT_URL_SFN", "http://127.0.0.1:6000", 1); // the per-service one wins
    aws_endpoint("SFN", "states", url, sizeof url, &over);
    CHECK_STR(url, "http://127.0.0.1:6000");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_SFN");
}

static void test_backoff(void) {
    setenv("RUNNER_AWS_RETRY_BASE_MS", "100", 1);
    // Full jitter: uniform in [0, min(20 s, 100 ms * 2^n)], so values vary and stay inside.
    for (int attempt = 0; attempt < 12; attempt++) {
        long ceiling = 100L << attempt;
        if (ceiling > 20000) ceiling = 20000;
        long lo = ceiling, hi = 0;
        for (int i = 0; i < 200; i++) {
            long d = aws_backoff_ms(attempt);
            if (d < lo) lo = d;
            if (d > hi) hi = d;
        }
        CHECK(lo >= 0);
        CHECK(hi <= ceiling);
        CHECK(hi > ceiling / 2); // 200 draws reach the upper half
        CHECK(lo < ceiling / 2); // ... and the lower half: it is jitter, not a constant
    }
    unsetenv("RUNNER_AWS_RETRY_BASE_MS");
}

static void test_credentials_from_environment(void) {
    setenv("AWS_ACCESS_KEY_ID", "AKIAUNITTEST", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "unit-secret", 1);
    setenv("AWS_SESSION_TOKEN", "unit-token", 1);
    aws_credentials c;
    CHECK_INT(aws_credentials_get(&c), 0);
    CHECK_STR(c.access_key, "AKIAUNITTEST");
    CHECK_STR(c.secret_key, "unit-secret");
    CHECK_STR(c.token, "unit-token");
    CHECK_INT(c.expiration, 0);
    aws_credentials_invalidate();
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    // A full URI over http to anything but loopback or the ECS agents is refused.
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://198.51.100.1/creds", 1);
    CHECK_INT(aws_credentials_get(&c), EXIT_USAGE);
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    error_clear();
}

static void test_xml_tokens_and_times(void) {
    const char *xml = "<?xml version=\"1.0\"?>\n<AssumeRoleResponse xmlns=\"https://sts\">"
                      "<AssumeRoleResult><Credentials><AccessKeyId>ASIA1</AccessKeyId>"
                      "<SessionToken>a&amp;b</SessionToken></Credentials></AssumeRoleResult>"
                      "</AssumeRoleResponse>";
    aws_buffer body = {0};
    CHECK_INT(aws_buffer_append(&body, xml, strlen(xml)), 0);
    char text[16], root[32];
    CHECK_INT(aws_xml_text(&body, "AccessKeyId", text, sizeof text, root, sizeof root), 0);
    CHECK_STR(text, "ASIA1");
    CHECK_STR(root, "AssumeRoleResponse");
    CHECK_INT(aws_xml_text(&body, "SessionToken", text, sizeof text, NULL, 0), 0);
    CHECK_STR(text, "a&b"); // entities decoded by expat
    CHECK_INT(aws_xml_text(&body, "Expiration", text, sizeof text, NULL, 0), 0);
    CHECK_STR(text, ""); // absent
    CHECK_INT(aws_xml_text(&body, "SessionToken", text, 3, NULL, 0), 0);
    CHECK_STR(text, "a&"); // cut to fit
    body.len -= 5; // truncated: not XML any more
    CHECK_INT(aws_xml_text(&body, "AccessKeyId", text, sizeof text, NULL, 0), -1);
    aws_buffer_free(&body);

    CHECK_INT((long long)aws_parse_time("2026-12-03T21:00:00Z"), 1796331600LL);
    CHECK_INT((long long)aws_parse_time("2026-12-03T21:00:00.123Z"), 1796331600LL);
    CHECK_INT((long long)aws_parse_time("tomorrow"), 0);
    CHECK_INT((long long)aws_parse_time(NULL), 0);

    char path[] = "/tmp/runner_test_tokenXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_INT((int)write(fd, "tok-123\n\n", 9), 9);
    close(fd);
    char token[16];
    CHECK_INT(aws_read_token_file(path, "TEST_TOKEN_FILE", token, sizeof token), 0);
    CHECK_STR(token, "tok-123");
    char small[4];
    CHECK_INT(aws_read_token_file(path, "TEST_TOKEN_FILE", small, sizeof small), EXIT_USAGE);
    CHECK(strstr(error_message(), "TEST_TOKEN_FILE") && strstr(error_message(), path));
    CHECK_STR(small, "");
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK_INT((int)write(fd, " \n", 2), 2);
    close(fd);
    CHECK_INT(aws_read_token_file(path, "TEST_TOKEN_FILE", token, sizeof token), EXIT_USAGE);
    CHECK(strstr(error_message(), "empty") != NULL);
    unlink(path);
    CHECK_INT(aws_read_token_file(path, "TEST_TOKEN_FILE", token, sizeof token), EXIT_USAGE);
    error_clear();
}

static void test_retries_then_remote_io(void) {
    // A port nobody listens on: every attempt is refused, then EXIT_REMOTE_IO.
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &len);
    close(s);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", ntohs(a.sin_port));
    setenv("RUNNER_AWS_RETRY_BASE_MS", "1", 1);
    aws_request req = {.method = "GET", .url = url, .body_fd = -1, .max_attempts = 3};
    aws_response resp = {0};
    CHECK_INT(aws_send(&req, &resp, "GET test"), EXIT_REMOTE_IO);
    CHECK(strstr(error_message(), "failed after 3 attempts") != NULL);
    CHECK_INT(resp.status, 0);
    aws_response_free(&resp);
    unsetenv("RUNNER_AWS_RETRY_BASE_MS");
    error_clear();
}

int main(void) {
    log_init(LOG_FORMAT_JSON, LOG_ERROR);
    test_uris();
    test_encoding_and_hashes();
    test_region_and_endpoints();
    test_backoff();
    test_credentials_from_environment();
    test_xml_tokens_and_times();
    test_retries_then_remote_io();
    return check_summary();
}
