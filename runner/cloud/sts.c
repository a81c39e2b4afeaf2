// STS AssumeRole and AssumeRoleWithWebIdentity for the credentials chain (aws.h).
// STS speaks the query protocol: a form-encoded POST (Action, Version and the
// parameters) and an XML answer, read with expat through aws_xml_text():
//   <AssumeRoleResponse><AssumeRoleResult><Credentials>
//     <AccessKeyId/><SecretAccessKey/><SessionToken/><Expiration/>
// The chain calls these while it holds its lock, so a request here is signed with the
// credentials it is given (aws_request.credentials), never with the chain's own.
#include "runner/cloud/aws.h"

#include "runner/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { WEB_IDENTITY_TOKEN_MAX = 64 * 1024 }; // EKS tokens are ~1 KB; JWTs stay small

// RoleSessionName allows [\w+=,.@-]{2,64}: the Batch job id ("uuid", "uuid:7" for an
// array child, "uuid#2" for a node) with the others made '-', so CloudTrail ties the
// session to the job.
static void default_session_name(char *out, size_t n) {
    const char *job = getenv("AWS_BATCH_JOB_ID");
    if (job && *job)
        snprintf(out, n, "runner-%s", job);
    else
        snprintf(out, n, "runner-%ld", (long)getpid());
    for (char *c = out; *c; c++)
        if (!(('a' <= *c && *c <= 'z') || ('A' <= *c && *c <= 'Z') || ('0' <= *c && *c <= '9') ||
              strchr("_+=,.@-", *c)))
            *c = '-';
}

// "&Name=value", value percent-encoded; false when out of memory.
static bool form_add(aws_buffer *form, const char *name, const char *value) {
    char *encoded = aws_uri_encode(value, false);
    if (!encoded) return false;
    bool ok = aws_buffer_append(form, "&", 1) == 0 &&
              aws_buffer_append(form, name, strlen(name)) == 0 &&
              aws_buffer_append(form, "=", 1) == 0 &&
              aws_buffer_append(form, encoded, strlen(encoded)) == 0;
    free(encoded);
    return ok;
}

// Errors STS gives for a request that will not succeed as configured; anything else
// that is not a 2xx (IDPCommunicationError, an answer from a proxy) counts as transport.
static bool code_is_configuration(const char *code) {
    static const char *const codes[] = {
        "AccessDenied",          "InvalidIdentityToken",    "ExpiredTokenException",
        "ValidationError",       "MalformedPolicyDocument", "PackedPolicyTooLarge",
        "RegionDisabledException", "InvalidClientTokenId",  "SignatureDoesNotMatch",
        "InvalidParameterValue", "IDPRejectedClaim",        "UnrecognizedClientException",
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i]) == 0) return true;
    return false;
}

// POST the form, check the answer, read the credentials out of it.
static int sts_call(const char *action, aws_buffer *form, const aws_credentials *signer,
                    const char *role_arn, aws_credentials *out) {
    char url[600];
    aws_endpoint("STS", "sts", url, sizeof url - 1, NULL);
    strcat(url, "/");
    struct curl_slist *headers =
        curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded; charset=utf-8");
    aws_request req = {.method = "POST", .url = url, .service = signer ? "sts" : NULL,
                       .credentials = signer, .headers = headers, .body = form->data,
                       .body_len = form->len, .body_fd = -1, .connect_timeout_ms = 5000,
                       .timeout_ms = 30000};
    char what[400];
    snprintf(what, sizeof what, "STS %s %s", action, role_arn);
    aws_response resp = {0};
    int rc = headers ? aws_send(&req, &resp, what)
                     : error_set(EXIT_RESOURCES, "%s: out of memory", what);
    curl_slist_free_all(headers);
    char expected_root[64], root[64] = "";
    snprintf(expected_root, sizeof expected_root, "%sResponse", action);
    if (rc == 0 && resp.status != 200) {
        char message[256];
        aws_xml_text(&resp.body, "Message", message, sizeof message, NULL, 0);
        rc = error_set(code_is_configuration(resp.error_code) ? EXIT_USAGE : EXIT_REMOTE_IO,
                       "%s: HTTP %ld %s%s%s", what, resp.status,
                       resp.error_code[0] ? resp.error_code : "(no error code)",
                       message[0] ? ": " : "", message);
    }
    char expiration[64] = "";
    if (rc == 0) {
        memset(out, 0, sizeof *out);
        bool parsed =
            aws_xml_text(&resp.body, "AccessKeyId", out->access_key, sizeof out->access_key,
                         root, sizeof root) == 0 &&
            aws_xml_text(&resp.body, "SecretAccessKey", out->secret_key, sizeof out->secret_key,
                         NULL, 0) == 0 &&
            aws_xml_text(&resp.body, "SessionToken", out->token, sizeof out->token, NULL, 0) ==
                0 &&
            aws_xml_text(&resp.body, "Expiration", expiration, sizeof expiration, NULL, 0) == 0;
        if (!parsed || strcmp(root, expected_root) != 0 || !out->access_key[0] ||
            !out->secret_key[0] || !out->token[0]) {
            memset(out, 0, sizeof *out);
            rc = error_set(EXIT_REMOTE_IO, "%s: the answer is not an %s with credentials", what,
                           expected_root);
        } else {
            out->expiration = aws_parse_time(expiration);
        }
    }
    aws_response_free(&resp);
    return rc;
}

// The form's common head and the role's parameters.
static bool form_start(aws_buffer *form, const char *action, const sts_role *role) {
    char session[80];
    if (role->session_name && *role->session_name)
        snprintf(session, sizeof session, "%s", role->session_name);
    else
        default_session_name(session, sizeof session);
    char duration[16];
    snprintf(duration, sizeof duration, "%d", role->duration_seconds);
    const char *head = "Action=";
    return aws_buffer_append(form, head, strlen(head)) == 0 &&
           aws_buffer_append(form, action, strlen(action)) == 0 &&
           form_add(form, "Version", "2011-06-15") && form_add(form, "RoleArn", role->role_arn) &&
           form_add(form, "RoleSessionName", session) &&
           (!role->external_id || !*role->external_id ||
            form_add(form, "ExternalId", role->external_id)) &&
           (role->duration_seconds <= 0 || form_add(form, "DurationSeconds", duration));
}

int sts_assume_role(const aws_credentials *source, const sts_role *role, aws_credentials *out) {
    aws_buffer form = {0};
    int rc = form_start(&form, "AssumeRole", role)
                 ? sts_call("AssumeRole", &form, source, role->role_arn, out)
                 : error_set(EXIT_RESOURCES, "STS AssumeRole: out of memory");
    aws_buffer_free(&form);
    return rc;
}

int sts_assume_role_with_web_identity(const sts_role *role, const char *token_file,
                                      aws_credentials *out) {
    char *token = malloc(WEB_IDENTITY_TOKEN_MAX);
    if (!token) return error_set(EXIT_RESOURCES, "STS AssumeRoleWithWebIdentity: out of memory");
    int rc = aws_read_token_file(token_file, "web identity token file", token,
                                 WEB_IDENTITY_TOKEN_MAX);
    aws_buffer form = {0};
    if (rc == 0) {
        bool built = form_start(&form, "AssumeRoleWithWebIdentity", role) &&
                     form_add(&form, "WebIdentityToken", token);
        rc = built ? sts_call("AssumeRoleWithWebIdentity", &form, NULL, role->role_arn, out)
                   : error_set(EXIT_RESOURCES, "STS AssumeRoleWithWebIdentity: out of memory");
    }
    // The form holds the token: wipe both before they go back to the allocator.
    if (form.data) memset(form.data, 0, form.len);
    aws_buffer_free(&form);
    memset(token, 0, WEB_IDENTITY_TOKEN_MAX);
    free(token);
    return rc;
}
