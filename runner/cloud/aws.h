#pragma once
// Internal plumbing of runner/cloud: one HTTP request engine over libcurl (SigV4 via
// CURLOPT_AWS_SIGV4, retries with exponential backoff and full jitter), the
// credentials chain, region and endpoint resolution, and the instance metadata
// service. Only files under runner/cloud include this; the rest of the runner uses
// cloud.h.
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

// A growable byte buffer, always NUL-terminated (so text bodies read as strings).
typedef struct {
    char *data;
    size_t len, cap;
} aws_buffer;

int aws_buffer_append(aws_buffer *b, const void *data, size_t len);
void aws_buffer_free(aws_buffer *b);
// Copy a string into dst[n], cut to fit (for fields where a cut is harmless).
void aws_copy(char *dst, size_t n, const char *src);

typedef struct {
    char access_key[128];
    char secret_key[256];
    char token[4096]; // "" for long-term keys
    time_t expiration; // 0 = does not expire
} aws_credentials;

// The current credentials, in the SDKs' order: environment keys; the profile's role
// (role_arn with source_profile or credential_source, through STS AssumeRole); web
// identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE, or the profile's role_arn +
// web_identity_token_file, through STS AssumeRoleWithWebIdentity: EKS service accounts);
// the profile's static keys; ECS container credentials; the IMDSv2 instance role.
// Cached and refreshed five minutes before they expire.
// Secret and token are registered with log_redact(). Thread-safe.
int aws_credentials_get(aws_credentials *out);
// Drop the cache (after an ExpiredToken answer) so the next call asks again.
void aws_credentials_invalidate(void);

// The AWS CLI's shared files for the profile AWS_PROFILE names (else "default"):
// AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials, section [NAME]) and
// AWS_CONFIG_FILE (default ~/.aws/config, [default] or [profile NAME]). Static keys
// (aws_access_key_id, aws_secret_access_key, aws_session_token; the credentials file
// first), the role to assume and where its source credentials come from, and the
// config file's region. For each setting the credentials file wins over the config file.
typedef struct {
    char name[128];
    bool found;                  // a section for the profile exists in either file
    aws_credentials credentials; // access_key "" when neither file has both keys
    char keys_from[4096];        // the file the keys came from
    char region[64];             // "" when the config file names none
    char role_arn[256];          // "" when the profile assumes no role
    char source_profile[128];    // the profile whose credentials assume the role
    char credential_source[32];  // Environment | Ec2InstanceMetadata | EcsContainer
    char web_identity_token_file[4096];
    char role_session_name[64];
    char external_id[1224];
    int duration_seconds;        // 0 = STS's default (one hour)
    char mfa_serial[256];        // a role that asks for an MFA code (refused: no prompt here)
    char credential_process[4096]; // a command that prints credentials as JSON (process.c)
    // SSO (sso.c). With sso_session, start URL and region come from the config file's
    // [sso-session NAME] section (a profile's own values must agree with it).
    char sso_session[128];
    char sso_start_url[1024];
    char sso_region[64];
    char sso_account_id[32];
    char sso_role_name[128];
    char credentials_file[4096], config_file[4096]; // "" when there is no path (no HOME)
} aws_profile;
// The profile AWS_PROFILE names (else "default") / the profile a source_profile names.
// 0; EXIT_USAGE for a file that cannot be read or parsed (file:line) and for a profile
// asked for by name (AWS_PROFILE, source_profile) that neither file has. Missing files
// are no error.
int aws_profile_load(aws_profile *out);
int aws_profile_load_named(const char *name, aws_profile *out);
// The profile uses SSO: it names sso_account_id or sso_role_name (botocore's test).
bool aws_profile_uses_sso(const aws_profile *p);
// The config file's region for the profile, read once; NULL when there is none.
const char *aws_profile_region(void);

// AWS_REGION, else AWS_DEFAULT_REGION, else the profile's region, else "us-east-1".
const char *aws_region(void);
// Base URL (no trailing slash) for a service: AWS_ENDPOINT_URL_<SERVICE>, else
// AWS_ENDPOINT_URL, else https://<host_prefix>.<region>.amazonaws.com. `env_suffix`
// is the SDKs' service id ("S3", "SECRETS_MANAGER", "SFN"). *overridden tells whether
// an override applied (S3 then uses path-style addressing). Writes into out.
void aws_endpoint(const char *env_suffix, const char *host_prefix, char *out, size_t n,
                  bool *overridden);
// The same in a given region rather than aws_region() (SSO's portal is in sso_region).
void aws_endpoint_in(const char *env_suffix, const char *host_prefix, const char *region,
                     char *out, size_t n, bool *overridden);

typedef struct {
    const char *method;   // "GET", "PUT", "POST", "HEAD", "DELETE"
    const char *url;      // full URL, query included, already percent-encoded
    const char *service;  // SigV4 service ("s3", "secretsmanager", "states"); NULL = unsigned
    const char *region;   // signing region; NULL = aws_region()
    struct curl_slist *headers; // extra request headers (caller owns)
    const char *body;     // in-memory body (may be NULL)
    size_t body_len;
    int body_fd;          // >= 0: body read from this file at body_offset for body_len bytes
    long long body_offset;
    const char *payload_sha256; // hex SHA-256 of the body for x-amz-content-sha256 (S3)
    const char *sink_path;      // 2xx response body goes to this file (truncated per try)
    // Resume into sink_path instead of truncating it: each try asks for the bytes the
    // file lacks (Range: bytes=<size>-), appends a 206 answer and starts the file over
    // on a 200 (a server that ignores Range). The Hub's .incomplete blobs use it.
    bool sink_resume;
    // Called with every response header line (CRLF cut) of every try, redirects'
    // included, for headers this engine does not keep (the Hub's X-Repo-Commit...).
    void (*on_header)(void *ud, const char *line);
    // Called after each write to sink_path with the file's size so far (progress).
    void (*on_sink_write)(void *ud, long long sink_size);
    void *hook_ud;              // handed to on_header and on_sink_write
    long connect_timeout_ms;    // 0 = 10 s
    long timeout_ms;            // whole request, 0 = none (a stall guard still applies)
    int max_attempts;           // 0 = RUNNER_AWS_MAX_ATTEMPTS or 5
    // Sign with these rather than the chain's (the chain itself, assuming a role).
    const aws_credentials *credentials;
} aws_request;

typedef struct {
    long status;          // last HTTP status (0 when no answer)
    aws_buffer body;      // response body (non-2xx always; 2xx when no sink_path)
    char etag[256];       // ETag header, quotes kept
    long long content_length; // Content-Length header, -1 when absent
    char error_code[128]; // AWS error code of a non-2xx answer ("NoSuchKey", "AccessDenied")
    char bucket_region[32]; // x-amz-bucket-region header (S3), "" when absent
    int curl_code;        // last CURLcode
} aws_response;

// Send with retries: transport failures, 5xx, 429 and throttling codes are retried
// with full-jitter backoff. Returns 0 when an answer that is not retryable arrived
// (check resp->status: 404 and 403 are returned, not retried), EXIT_REMOTE_IO with
// error_set() when the attempts are spent, EXIT_OUTPUT when sink_path cannot be written.
// `what` names the operation and object for messages ("GET s3://b/k").
int aws_send(const aws_request *req, aws_response *resp, const char *what);
void aws_response_free(aws_response *resp);

// POST one call of a JSON-protocol service (Secrets Manager, Step Functions):
// Content-Type application/x-amz-json-<json_version>, X-Amz-Target <target>, the
// payload as body, signed for `service`, endpoint as aws_endpoint(env_suffix, host_prefix).
int aws_json_call(const char *service, const char *env_suffix, const char *host_prefix,
                  const char *json_version, const char *target, const cJSON *payload,
                  aws_response *resp, const char *what);

// The text of the first <element> of an XML body into out[n] ("" when absent), and the
// root element's name into root[root_n] when root is not NULL. 0 when the body parsed.
int aws_xml_text(const aws_buffer *body, const char *element, char *out, size_t n, char *root,
                 size_t root_n);

// STS, the query API that trades one identity for a role's temporary credentials.
// Endpoint AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL, else the regional
// https://sts.<region>.amazonaws.com.
typedef struct {
    const char *role_arn;
    const char *session_name; // NULL or "": "runner-<AWS_BATCH_JOB_ID or pid>"
    const char *external_id;  // NULL or "": none
    int duration_seconds;     // 0: STS's default
} sts_role;
// AssumeRole, signed with `source`. 0; EXIT_USAGE when STS refuses (the role's trust
// policy, a wrong ARN: a configuration to fix); EXIT_REMOTE_IO when it cannot be reached.
int sts_assume_role(const aws_credentials *source, const sts_role *role, aws_credentials *out);
// AssumeRoleWithWebIdentity with the OIDC token read from `token_file` (unsigned, as the
// token is the proof). The same codes; an unreadable token file is EXIT_USAGE.
int sts_assume_role_with_web_identity(const sts_role *role, const char *token_file,
                                      aws_credentials *out);

// credential_process (process.c). The command split into words as botocore splits it on
// POSIX (Python's shlex.split; no shell): a NULL-terminated array the caller frees with
// aws_command_free(). EXIT_USAGE for an empty command or an open quote.
int aws_command_split(const char *command, char ***out);
void aws_command_free(char **words);
// The AWS CLI's JSON contract ({"Version": 1, "AccessKeyId", "SecretAccessKey",
// "SessionToken"?, "Expiration"?}) into *out. EXIT_USAGE naming `what` and the missing or
// wrong field, never a value.
int aws_credentials_from_process_output(const char *text, size_t len, const char *what,
                                        aws_credentials *out);
// Run the profile's command (RUNNER_AWS_CREDENTIAL_PROCESS_TIMEOUT_S, default 60 s) and
// read its credentials. EXIT_USAGE when it cannot be run, fails or prints no credentials;
// EXIT_REMOTE_IO when it does not finish in time (it is killed, with its process group).
int aws_credential_process(const char *profile, const char *command, aws_credentials *out);

// SSO (sso.c): the AWS CLI's cached token (~/.aws/sso/cache/<sha1 of the session name,
// or of the start URL for a profile without sso_session>.json), then GetRoleCredentials
// at https://portal.sso.<sso_region>.amazonaws.com (AWS_ENDPOINT_URL_SSO or
// AWS_ENDPOINT_URL override it). EXIT_USAGE for a missing or expired token (run
// `aws sso login`) and for refusals; EXIT_REMOTE_IO when the portal cannot be reached.
int sso_role_credentials(const aws_profile *p, aws_credentials *out);
// The token cache's file name for a session name or start URL: 40 hex digits + ".json".
void sso_cache_file_name(const char *key, char out[46]);

// Lowercase hex SHA-256 of a memory block / of `len` bytes of a file from `offset`.
void aws_sha256_hex(const void *data, size_t len, char out[65]);
int aws_sha256_file_hex(int fd, long long offset, long long len, char out[65]);

// "2026-12-03T21:00:00Z" (credentials' Expiration) -> seconds since the epoch, UTC;
// 0 when NULL or unreadable.
time_t aws_parse_time(const char *iso8601);

// A token kept in a file (the ECS authorization token, an OIDC web identity token):
// read whole into out[cap], trailing whitespace cut, registered with log_redact().
// 0; EXIT_USAGE naming `what` (the variable or key that named the file) and the path
// when it is missing, unreadable, empty or does not fit.
int aws_read_token_file(const char *path, const char *what, char *out, size_t cap);

// Percent-encode per SigV4 (unreserved kept; '/' kept when keep_slash). Writes into a
// malloc'd string the caller frees.
char *aws_uri_encode(const char *s, bool keep_slash);

// Retry delay for attempt n (0-based): uniform in [0, min(cap, base * 2^n)] ms.
long aws_backoff_ms(int attempt);


// Instance metadata service (IMDSv2). Base URL from AWS_EC2_METADATA_SERVICE_ENDPOINT
// or http://169.254.169.254; disabled by AWS_EC2_METADATA_DISABLED=true.
bool imds_disabled(void);
// PUT /latest/api/token. 0 on success; EXIT_REMOTE_IO when IMDS does not answer.
int imds_token(char *out, size_t n);
// GET `path` with the token; *status gets the HTTP status. 0 when IMDS answered.
int imds_get(const char *token, const char *path, aws_buffer *out, long *status);
