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
// An sso-session token within 15 minutes of its expiry (or past it) is renewed as
// botocore's SSOTokenProvider renews it, through SSO OIDC CreateToken with the cached
// refresh token and client registration, and the CLI's cache file is rewritten (the
// same fields botocore writes, atomically), so the AWS CLI, boto3 and the next runner
// see the new token:
//   POST https://oidc.<sso_region>.amazonaws.com/token                      (unsigned)
//       {"grantType": "refresh_token", "clientId", "clientSecret", "refreshToken"}
//   -> {"accessToken", "expiresIn": <seconds>, "refreshToken"?, "tokenType"}
// A legacy profile (no sso_session) has no refresh token: as with botocore, it asks for
// a new login once its token has expired.
#include "runner/cloud/aws.h"

#include "runner/error.h"
#include "runner/job/files.h"
#include "runner/log.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    TOKEN_FILE_MAX = 256 * 1024,
    REFRESH_WINDOW_S = 15 * 60, // botocore's SSOTokenProvider._REFRESH_WINDOW
};

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

// Overwrite every string of a parsed token cache entry (access and refresh tokens, the
// client secret) before it is freed.
static void wipe_json(cJSON *json) {
    const cJSON *field;
    cJSON_ArrayForEach(field, json) {
        if (cJSON_IsString(field)) memset(field->valuestring, 0, strlen(field->valuestring));
    }
    cJSON_Delete(json);
}

static const char *json_string(const cJSON *json, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    return cJSON_IsString(item) && item->valuestring[0] ? item->valuestring : NULL;
}

// "2026-12-07T21:00:00Z", the form botocore's _sso_json_dumps writes.
static void format_utc(time_t t, char out[32]) {
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

// Write `json` to `path` as botocore's JSONFileCache does: a temporary file beside it,
// fsync, rename over the old entry; mode 0600, since it holds a refresh token and a
// client secret. 0 or an exit code (its reason in error_message()).
static int write_cache_entry(const char *path, const cJSON *json) {
    char *text = cJSON_PrintUnformatted(json);
    if (!text) return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    int rc = files_write_private(path, text, strlen(text));
    memset(text, 0, strlen(text));
    free(text);
    return rc;
}

// SSO OIDC CreateToken with the cached refresh token. On success *renewed is the new
// cache entry (botocore's fields) and 0 is returned; otherwise `why` says why not (no
// secret in it) and the cached token stays as it is.
static int refresh_token(const aws_profile *p, const cJSON *cached, cJSON **renewed,
                         char *why, size_t why_n) {
    *renewed = NULL;
    const char *refresh = json_string(cached, "refreshToken");
    const char *client_id = json_string(cached, "clientId");
    const char *client_secret = json_string(cached, "clientSecret");
    const char *registration = json_string(cached, "registrationExpiresAt");
    if (!refresh || !client_id || !client_secret || !registration) {
        snprintf(why, why_n, "the cache entry holds no refresh token and client registration");
        return -1;
    }
    time_t registration_end = aws_parse_time(registration);
    if (registration_end <= time(NULL)) {
        snprintf(why, why_n, "the client registration expired at %s", registration);
        return -1;
    }
    log_redact(refresh);
    log_redact(client_secret);

    cJSON *request = cJSON_CreateObject();
    cJSON_AddStringToObject(request, "grantType", "refresh_token");
    cJSON_AddStringToObject(request, "clientId", client_id);
    cJSON_AddStringToObject(request, "clientSecret", client_secret);
    cJSON_AddStringToObject(request, "refreshToken", refresh);
    char *body = cJSON_PrintUnformatted(request);
    wipe_json(request);

    char base[600], url[700];
    aws_endpoint_in("SSO_OIDC", "oidc", p->sso_region, base, sizeof base, NULL);
    snprintf(url, sizeof url, "%s/token", base);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    char what[300];
    snprintf(what, sizeof what, "SSO OIDC CreateToken (sso-session %s)", p->sso_session);
    aws_response resp = {0};
    int rc;
    if (!body || !headers) {
        rc = error_set(EXIT_RESOURCES, "%s: out of memory", what);
    } else {
        aws_request req = {.method = "POST", .url = url, .headers = headers, .body = body,
                           .body_len = strlen(body), .body_fd = -1,
                           .connect_timeout_ms = 5000, .timeout_ms = 30000};
        rc = aws_send(&req, &resp, what);
    }
    if (body) memset(body, 0, strlen(body));
    free(body);
    curl_slist_free_all(headers);

    cJSON *answer = NULL;
    if (rc != 0) {
        snprintf(why, why_n, "%s", error_message());
        error_clear(); // handled here: the caller decides whether the old token still does
    } else {
        answer = cJSON_ParseWithLength(resp.body.data ? resp.body.data : "", resp.body.len);
        if (resp.status != 200) {
            // OIDC errors: {"error": "invalid_grant", "error_description": "..."}.
            const char *code = json_string(answer, "error");
            const char *text = json_string(answer, "error_description");
            snprintf(why, why_n, "%s: HTTP %ld%s%s%s%s", what, resp.status, code ? " " : "",
                     code ? code : "", text ? ": " : "", text ? text : "");
            rc = -1;
        }
    }
    const char *access = rc == 0 ? json_string(answer, "accessToken") : NULL;
    const cJSON *expires_in = cJSON_GetObjectItemCaseSensitive(answer, "expiresIn");
    if (rc == 0 && (!access || !cJSON_IsNumber(expires_in) || expires_in->valuedouble <= 0)) {
        snprintf(why, why_n, "%s: the answer holds no accessToken and expiresIn", what);
        rc = -1;
    }
    if (rc == 0) {
        const char *new_refresh = json_string(answer, "refreshToken");
        log_redact(access);
        if (new_refresh) log_redact(new_refresh);
        char expires_at[32];
        format_utc(time(NULL) + (time_t)expires_in->valuedouble, expires_at);
        // botocore's _attempt_create_token: these fields and no others.
        cJSON *entry = cJSON_CreateObject();
        cJSON_AddStringToObject(entry, "startUrl", p->sso_start_url);
        cJSON_AddStringToObject(entry, "region", p->sso_region);
        cJSON_AddStringToObject(entry, "accessToken", access);
        cJSON_AddStringToObject(entry, "expiresAt", expires_at);
        cJSON_AddStringToObject(entry, "clientId", client_id);
        cJSON_AddStringToObject(entry, "clientSecret", client_secret);
        cJSON_AddStringToObject(entry, "registrationExpiresAt", registration);
        if (new_refresh) cJSON_AddStringToObject(entry, "refreshToken", new_refresh);
        *renewed = entry;
    }
    if (answer) wipe_json(answer);
    if (resp.body.data) memset(resp.body.data, 0, resp.body.len);
    aws_response_free(&resp);
    return rc == 0 ? 0 : -1;
}

// The cached access token into token[cap] (registered with log_redact()), renewed
// first when it is an sso-session token close to or past its expiry.
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
    const char *access = json_string(json, "accessToken");
    const char *expires = json_string(json, "expiresAt");
    time_t expires_at = expires ? aws_parse_time(expires) : 0;
    if (!access || !expires_at) {
        wipe_json(json);
        return error_set(EXIT_USAGE, "AWS profile %s: %s is not an SSO token (accessToken, "
                                     "expiresAt); %s", p->name, path, hint);
    }
    log_redact(access);

    char why[600] = "";
    if (p->sso_session[0] && expires_at - time(NULL) < REFRESH_WINDOW_S) {
        cJSON *renewed = NULL;
        if (refresh_token(p, json, &renewed, why, sizeof why) == 0) {
            // The new token is good whether or not the cache took it; an old cache entry
            // only means the next reader renews again.
            if (write_cache_entry(path, renewed) != 0) {
                log_warn("sso_token_cache", "%s (the renewed token is used, not cached)",
                         error_message());
                error_clear();
            }
            wipe_json(json);
            json = renewed;
            access = json_string(json, "accessToken");
            expires = json_string(json, "expiresAt");
            expires_at = aws_parse_time(expires);
            log_info("sso_token_renewed", "sso-session %s, valid until %s", p->sso_session,
                     expires);
        } else if (expires_at > time(NULL)) {
            // botocore keeps using a token it could not renew while it lasts.
            log_warn("sso_token_not_renewed", "sso-session %s expires at %s: %s", p->sso_session,
                     expires, why);
        }
    }
    int rc = 0;
    if (expires_at <= time(NULL))
        rc = error_set(EXIT_USAGE, "AWS profile %s: the SSO token for %s %s expired at %s%s%s; "
                                   "%s", p->name, of, key, expires,
                       why[0] ? " and could not be renewed: " : "", why, hint);
    else if (strlen(access) >= cap)
        rc = error_set(EXIT_USAGE, "AWS profile %s: the SSO token in %s is too long", p->name,
                       path);
    if (rc == 0) {
        aws_copy(token, cap, access);
        log_redact(token);
    }
    wipe_json(json);
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
