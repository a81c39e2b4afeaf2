// IAM Identity Center (SSO) profiles, as botocore's SSOProvider reads them: the runner
// does no login itself (that needs a browser); it uses the token `aws sso login` left in
// the AWS CLI's cache and trades it for the role's credentials:
//   ~/.aws/sso/cache/<sha1 hex of the sso_session name, or of sso_start_url for a
//   profile without sso_session>.json     {"accessToken": "...", "expiresAt": "...Z"}
//   GET https://portal.sso.<sso_region>.amazonaws.com/federation/credentials
//       ?account_id=<sso_account_id>&role_name=<sso_role_name>
//       x-amz-sso_bearer_token: <accessToken>                     (unsigned)
//   -> {"roleCredentials": {"accessKeyId", "secretAccessKey", "sessionToken",
//                           "expiration": <milliseconds since the epoch>}}
// botocore refreshes an sso-session token through SSO OIDC when it is within 15 minutes
// of expiry; the runner does not write the CLI's cache, so it asks for a new login once
// the token has expired.
#include "runner/cloud/aws.h"

#include "runner/error.h"
#include "runner/log.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { TOKEN_FILE_MAX = 256 * 1024 };

void sso_cache_file_name(const char *key, char out[46]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_Digest(key, strlen(key), md, &md_len, EVP_sha1(), NULL);
    for (unsigned i = 0; i < 20; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    snprintf(out + 40, 6, ".json");
}

// What a user runs to get a new token for this profile.
static void login_hint(const aws_profile *p, char *out, size_t n) {
    if (strcmp(p->name, "default") == 0)
        snprintf(out, n, "run `aws sso login`");
    else
        snprintf(out, n, "run `aws sso login --profile %s`", p->name);
}

static int check_settings(const aws_profile *p) {
    const char *missing[4];
    int count = 0;
    if (!p->sso_start_url[0]) missing[count++] = "sso_start_url";
    if (!p->sso_region[0]) missing[count++] = "sso_region";
    if (!p->sso_account_id[0]) missing[count++] = "sso_account_id";
    if (!p->sso_role_name[0]) missing[count++] = "sso_role_name";
    if (!count) return 0;
    char list[128] = "";
    for (int i = 0; i < count; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 missing[i]);
    return error_set(EXIT_USAGE, "AWS profile %s uses SSO but lacks %s%s", p->name, list,
                     p->sso_session[0] ? " (in the profile or its sso-session)" : "");
}

// The cached access token into token[cap] (registered with log_redact()).
static int read_cached_token(const aws_profile *p, char *token, size_t cap) {
    const char *home = getenv("HOME");
    char hint[200];
    login_hint(p, hint, sizeof hint);
    if (!home || !*home)
        return error_set(EXIT_USAGE, "AWS profile %s uses SSO, whose token cache is under "
                                     "$HOME/.aws/sso/cache, but HOME is not set", p->name);
    char name[46], path[4200];
    sso_cache_file_name(p->sso_session[0] ? p->sso_session : p->sso_start_url, name);
    snprintf(path, sizeof path, "%s/.aws/sso/cache/%s", home, name);
    const char *of = p->sso_session[0] ? "sso-session" : "start URL";
    const char *key = p->sso_session[0] ? p->sso_session : p->sso_start_url;

    FILE *f = fopen(path, "r");
    if (!f)
        return error_set(EXIT_USAGE, "AWS profile %s: no SSO token for %s %s (%s: %s); %s",
                         p->name, of, key, path, strerror(errno), hint);
    char *text = malloc(TOKEN_FILE_MAX);
    size_t len = text ? fread(text, 1, TOKEN_FILE_MAX, f) : 0;
    fclose(f);
    if (!text) return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    cJSON *json = cJSON_ParseWithLength(text, len);
    memset(text, 0, TOKEN_FILE_MAX);
    free(text);
    const cJSON *access = cJSON_GetObjectItemCaseSensitive(json, "accessToken");
    const cJSON *expires = cJSON_GetObjectItemCaseSensitive(json, "expiresAt");
    int rc = 0;
    time_t expires_at = cJSON_IsString(expires) ? aws_parse_time(expires->valuestring) : 0;
    if (!cJSON_IsString(access) || !access->valuestring[0] || !expires_at)
        rc = error_set(EXIT_USAGE, "AWS profile %s: %s is not an SSO token (accessToken, "
                                   "expiresAt); %s", p->name, path, hint);
    else if (expires_at <= time(NULL))
        rc = error_set(EXIT_USAGE, "AWS profile %s: the SSO token for %s %s expired at %s; %s",
                       p->name, of, key, expires->valuestring, hint);
    else if (strlen(access->valuestring) >= cap)
        rc = error_set(EXIT_USAGE, "AWS profile %s: the SSO token in %s is too long", p->name,
                       path);
    if (rc == 0) {
        aws_copy(token, cap, access->valuestring);
        log_redact(token);
    }
    if (cJSON_IsString(access)) memset(access->valuestring, 0, strlen(access->valuestring));
    // The cache may hold a refresh token and a client secret too: wipe every string.
    const cJSON *field;
    cJSON_ArrayForEach(field, json) {
        if (cJSON_IsString(field)) memset(field->valuestring, 0, strlen(field->valuestring));
    }
    cJSON_Delete(json);
    return rc;
}

static int role_credentials_from_json(const aws_buffer *body, const char *what,
                                      aws_credentials *out) {
    cJSON *json = cJSON_ParseWithLength(body->data ? body->data : "", body->len);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(json, "roleCredentials");
    const cJSON *ak = cJSON_GetObjectItemCaseSensitive(role, "accessKeyId");
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(role, "secretAccessKey");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(role, "sessionToken");
    const cJSON *expiration = cJSON_GetObjectItemCaseSensitive(role, "expiration");
    int rc = 0;
    if (!cJSON_IsString(ak) || !cJSON_IsString(sk) || !cJSON_IsString(token) ||
        !cJSON_IsNumber(expiration) || !ak->valuestring[0] || !sk->valuestring[0] ||
        strlen(sk->valuestring) >= sizeof out->secret_key ||
        strlen(token->valuestring) >= sizeof out->token) {
        rc = error_set(EXIT_REMOTE_IO, "%s: the answer holds no roleCredentials", what);
    } else {
        memset(out, 0, sizeof *out);
        aws_copy(out->access_key, sizeof out->access_key, ak->valuestring);
        aws_copy(out->secret_key, sizeof out->secret_key, sk->valuestring);
        aws_copy(out->token, sizeof out->token, token->valuestring);
        out->expiration = (time_t)(expiration->valuedouble / 1000.0); // milliseconds
    }
    if (cJSON_IsString(sk)) memset(sk->valuestring, 0, strlen(sk->valuestring));
    if (cJSON_IsString(token)) memset(token->valuestring, 0, strlen(token->valuestring));
    cJSON_Delete(json);
    return rc;
}

int sso_role_credentials(const aws_profile *p, aws_credentials *out) {
    int rc = check_settings(p);
    if (rc) return rc;
    char token[8192];
    rc = read_cached_token(p, token, sizeof token);
    if (rc) return rc;

    char base[600], url[1200];
    aws_endpoint_in("SSO", "portal.sso", p->sso_region, base, sizeof base, NULL);
    char *account = aws_uri_encode(p->sso_account_id, false);
    char *role = aws_uri_encode(p->sso_role_name, false);
    char header[8300];
    snprintf(header, sizeof header, "x-amz-sso_bearer_token: %s", token);
    struct curl_slist *headers = curl_slist_append(NULL, header);
    memset(header, 0, sizeof header);
    char what[400];
    snprintf(what, sizeof what, "SSO GetRoleCredentials %s/%s", p->sso_account_id,
             p->sso_role_name);
    aws_response resp = {0};
    if (!account || !role || !headers) {
        rc = error_set(EXIT_RESOURCES, "%s: out of memory", what);
    } else {
        snprintf(url, sizeof url, "%s/federation/credentials?account_id=%s&role_name=%s", base,
                 account, role);
        aws_request req = {.method = "GET", .url = url, .headers = headers, .body_fd = -1,
                           .connect_timeout_ms = 5000, .timeout_ms = 30000};
        rc = aws_send(&req, &resp, what);
    }
    free(account);
    free(role);
    for (struct curl_slist *h = headers; h; h = h->next) memset(h->data, 0, strlen(h->data));
    curl_slist_free_all(headers);
    memset(token, 0, sizeof token);
    if (rc == 0 && resp.status != 200) {
        // REST-JSON errors: {"message": "..."}; 401 is a token the portal no longer takes
        // (expired early, signed out), 403 a role the user may not use, 404 no such role.
        char message[256] = "";
        cJSON *json = cJSON_ParseWithLength(resp.body.data ? resp.body.data : "", resp.body.len);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(json, "message");
        if (!cJSON_IsString(m)) m = cJSON_GetObjectItemCaseSensitive(json, "Message");
        if (cJSON_IsString(m)) aws_copy(message, sizeof message, m->valuestring);
        cJSON_Delete(json);
        char hint[200];
        login_hint(p, hint, sizeof hint);
        if (resp.status == 401)
            rc = error_set(EXIT_USAGE, "%s (profile %s): HTTP 401: the SSO session has expired "
                                       "or is signed out%s%s; %s", what, p->name,
                           message[0] ? ": " : "", message, hint);
        else
            rc = error_set(EXIT_USAGE, "%s (profile %s): HTTP %ld%s%s", what, p->name,
                           resp.status, message[0] ? ": " : "", message);
    }
    if (rc == 0) rc = role_credentials_from_json(&resp.body, what, out);
    if (resp.body.data) memset(resp.body.data, 0, resp.body.len);
    aws_response_free(&resp);
    return rc;
}
