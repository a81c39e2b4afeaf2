// The credentials chain, in the order the AWS SDKs use: environment variables; the
// shared files' profile (~/.aws/credentials, ~/.aws/config: profile.c) when it assumes a
// role; web identity (EKS service accounts); the profile's SSO role, static keys or
// credential_process; ECS container
// credentials (the Batch job role); the EC2 instance role over IMDSv2. Roles are assumed
// through STS (sts.c); a profile may also use SSO (sso.c) or a credential_process
// (process.c).
// Temporary credentials are cached and refreshed five minutes before they expire.
// Secrets never reach a log line: each new secret key and token goes to log_redact().
#include "runner/cloud/aws.h"

#include "runner/error.h"
#include "runner/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { REFRESH_BEFORE_S = 300 };

static pthread_mutex_t creds_lock = PTHREAD_MUTEX_INITIALIZER;
static aws_credentials creds_cached;
static bool creds_valid;
static char creds_source[32];

static const char *env(const char *name) {
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

// The JSON both the ECS endpoint and IMDS return.
static int credentials_from_json(const char *body, const char *source, aws_credentials *out) {
    cJSON *json = cJSON_Parse(body);
    const cJSON *ak = cJSON_GetObjectItemCaseSensitive(json, "AccessKeyId");
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(json, "SecretAccessKey");
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(json, "Token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(json, "Expiration");
    int rc = 0;
    if (!cJSON_IsString(ak) || !cJSON_IsString(sk)) {
        rc = error_set(EXIT_REMOTE_IO, "%s: credentials answer lacks AccessKeyId/SecretAccessKey",
                       source);
    } else {
        memset(out, 0, sizeof *out);
        snprintf(out->access_key, sizeof out->access_key, "%s", ak->valuestring);
        snprintf(out->secret_key, sizeof out->secret_key, "%s", sk->valuestring);
        if (cJSON_IsString(tok)) snprintf(out->token, sizeof out->token, "%s", tok->valuestring);
        out->expiration = aws_parse_time(cJSON_IsString(exp) ? exp->valuestring : NULL);
    }
    cJSON_Delete(json);
    return rc;
}

// http:// full URIs are allowed only to the addresses the SDKs allow (loopback and the
// ECS/EKS agents), so a misconfigured variable cannot send the token anywhere.
static bool full_uri_allowed(const char *uri) {
    if (strncmp(uri, "https://", 8) == 0) return true;
    CURLU *u = curl_url();
    char *host = NULL;
    bool ok = false;
    if (u && curl_url_set(u, CURLUPART_URL, uri, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        ok = strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 ||
             strcmp(host, "[::1]") == 0 || strcmp(host, "169.254.170.2") == 0 ||
             strcmp(host, "169.254.170.23") == 0 || strcmp(host, "[fd00:ec2::23]") == 0;
    }
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

static bool container_configured(void) {
    return env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") ||
           env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
}

static int from_container(aws_credentials *out) {
    const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    char url[2048];
    struct curl_slist *headers = NULL;
    if (rel) {
        // RUNNER_AWS_CONTAINER_CREDENTIALS_HOST exists for tests only (the SDKs have none).
        const char *host = env("RUNNER_AWS_CONTAINER_CREDENTIALS_HOST");
        snprintf(url, sizeof url, "http://%s%s", host ? host : "169.254.170.2", rel);
    } else {
        if (!full_uri_allowed(full))
            return error_set(EXIT_USAGE,
                             "AWS_CONTAINER_CREDENTIALS_FULL_URI: http:// only to loopback or "
                             "the ECS/EKS agent addresses");
        snprintf(url, sizeof url, "%s", full);
        char token[4096] = "";
        const char *file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
        if (file) {
            int rc = aws_read_token_file(file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token,
                                         sizeof token);
            if (rc) return rc;
        } else if (env("AWS_CONTAINER_AUTHORIZATION_TOKEN")) {
            snprintf(token, sizeof token, "%s", env("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
        }
        if (token[0]) {
            log_redact(token);
            char line[4200];
            snprintf(line, sizeof line, "Authorization: %s", token);
            headers = curl_slist_append(headers, line);
        }
    }
    aws_request req = {.method = "GET", .url = url, .headers = headers, .body_fd = -1,
                       .connect_timeout_ms = 2000, .timeout_ms = 5000, .max_attempts = 3};
    aws_response resp = {0};
    int rc = aws_send(&req, &resp, "GET container credentials");
    curl_slist_free_all(headers);
    if (rc == 0 && resp.status != 200)
        rc = error_set(EXIT_REMOTE_IO, "container credentials endpoint answered HTTP %ld",
                       resp.status);
    if (rc == 0) rc = credentials_from_json(resp.body.data, "container credentials", out);
    aws_response_free(&resp);
    return rc;
}

// 0 with credentials; 1 when there is no instance role (not on EC2, or no role).
static int from_instance_role(aws_credentials *out) {
    if (imds_disabled()) return 1;
    char token[256];
    if (imds_token(token, sizeof token) != 0) {
        error_clear();
        return 1;
    }
    aws_buffer role = {0}, body = {0};
    long status = 0;
    int rc = imds_get(token, "/latest/meta-data/iam/security-credentials/", &role, &status);
    if (rc || status != 200 || !role.data || !role.data[0]) {
        error_clear();
        aws_buffer_free(&role);
        return 1;
    }
    char *nl = strchr(role.data, '\n');
    if (nl) *nl = '\0';
    char path[512];
    snprintf(path, sizeof path, "/latest/meta-data/iam/security-credentials/%s", role.data);
    rc = imds_get(token, path, &body, &status);
    if (rc == 0 && status != 200)
        rc = error_set(EXIT_REMOTE_IO, "IMDS %s answered HTTP %ld", path, status);
    if (rc == 0) rc = credentials_from_json(body.data, "IMDS instance role", out);
    aws_buffer_free(&role);
    aws_buffer_free(&body);
    return rc;
}

static bool from_environment(aws_credentials *out) {
    if (!env("AWS_ACCESS_KEY_ID") || !env("AWS_SECRET_ACCESS_KEY")) return false;
    snprintf(out->access_key, sizeof out->access_key, "%s", env("AWS_ACCESS_KEY_ID"));
    snprintf(out->secret_key, sizeof out->secret_key, "%s", env("AWS_SECRET_ACCESS_KEY"));
    if (env("AWS_SESSION_TOKEN"))
        snprintf(out->token, sizeof out->token, "%s", env("AWS_SESSION_TOKEN"));
    return true;
}

static sts_role role_of(const aws_profile *p) {
    return (sts_role){.role_arn = p->role_arn, .session_name = p->role_session_name,
                      .external_id = p->external_id, .duration_seconds = p->duration_seconds};
}

// A profile's file, for messages.
static const char *file_of(const aws_profile *p) {
    return p->config_file[0] ? p->config_file : p->credentials_file;
}

enum { ROLE_CHAIN_MAX = 5 }; // source_profile hops, as a guard against cycles

// A profile's static keys come before its credential_process when they stand in the
// credentials file, after it when they stand in the config file: botocore asks its
// shared-credentials provider, then the process provider, then the config provider.
static bool keys_in_credentials_file(const aws_profile *p) {
    return p->credentials.access_key[0] && strcmp(p->keys_from, p->credentials_file) == 0;
}

// What a profile's credentials come from, for the aws_credentials log line.
static const char *profile_source(const aws_profile *p, bool assumes_role) {
    if (p->role_arn[0]) return assumes_role ? "assume-role" : "web-identity";
    if (aws_profile_uses_sso(p)) return "sso";
    if (!keys_in_credentials_file(p) && p->credential_process[0]) return "process";
    return "profile";
}

// The credentials a profile stands for, as the SDKs read it: its role_arn assumed with
// the credentials of its source_profile (itself resolved the same way; a profile that
// names itself lends its own static keys) or of its credential_source, or through its
// web_identity_token_file; else SSO, static keys in the credentials file, its
// credential_process, static keys in the config file, in botocore's order. 1 when it
// stands for none.
static int from_profile(const aws_profile *p, int depth, aws_credentials *out) {
    if (!p->role_arn[0]) {
        if (aws_profile_uses_sso(p)) return sso_role_credentials(p, out);
        if (!keys_in_credentials_file(p) && p->credential_process[0])
            return aws_credential_process(p->name, p->credential_process, out);
        if (!p->credentials.access_key[0]) return 1;
        *out = p->credentials;
        return 0;
    }
    // botocore prompts for the code of mfa_serial when it assumes the role; a batch job
    // has nobody to type it.
    if (p->mfa_serial[0] && !p->web_identity_token_file[0])
        return error_set(EXIT_USAGE,
                         "AWS profile %s (%s): mfa_serial asks for an MFA code typed at a "
                         "prompt, which a batch job cannot answer; use a role without MFA for "
                         "the job, or export credentials first "
                         "(aws configure export-credentials --format env)",
                         p->name, file_of(p));
    sts_role role = role_of(p);
    if (p->source_profile[0] && p->credential_source[0])
        return error_set(EXIT_USAGE, "AWS profile %s (%s): source_profile and "
                                     "credential_source exclude each other", p->name, file_of(p));
    aws_credentials source = {0};
    int rc;
    if (p->source_profile[0]) {
        if (depth >= ROLE_CHAIN_MAX)
            return error_set(EXIT_USAGE, "AWS profile %s: more than %d source_profile hops "
                                         "(a cycle?)", p->name, ROLE_CHAIN_MAX);
        if (strcmp(p->source_profile, p->name) == 0) {
            if (!p->credentials.access_key[0])
                return error_set(EXIT_USAGE, "AWS profile %s: source_profile is itself but it "
                                             "has no static keys", p->name);
            source = p->credentials;
            rc = 0;
        } else {
            aws_profile *next = calloc(1, sizeof *next);
            if (!next) return error_set(EXIT_RESOURCES, "AWS profile %s: out of memory", p->name);
            rc = aws_profile_load_named(p->source_profile, next);
            if (rc == 0) rc = from_profile(next, depth + 1, &source);
            if (rc == 1)
                rc = error_set(EXIT_USAGE, "AWS profile %s: its source_profile %s has no "
                                           "credentials", p->name, next->name);
            memset(next, 0, sizeof *next);
            free(next);
        }
    } else if (p->credential_source[0]) {
        const char *cs = p->credential_source;
        if (strcmp(cs, "Environment") == 0)
            rc = from_environment(&source) ? 0 : 1;
        else if (strcmp(cs, "EcsContainer") == 0)
            rc = container_configured() ? from_container(&source) : 1;
        else if (strcmp(cs, "Ec2InstanceMetadata") == 0)
            rc = from_instance_role(&source);
        else
            return error_set(EXIT_USAGE, "AWS profile %s (%s): credential_source %s is none of "
                                         "Environment, Ec2InstanceMetadata, EcsContainer",
                             p->name, file_of(p), cs);
        if (rc == 1)
            rc = error_set(EXIT_USAGE, "AWS profile %s: its credential_source %s has no "
                                       "credentials", p->name, cs);
    } else if (p->web_identity_token_file[0]) {
        return sts_assume_role_with_web_identity(&role, p->web_identity_token_file, out);
    } else {
        return error_set(EXIT_USAGE, "AWS profile %s (%s): role_arn needs source_profile, "
                                     "credential_source or web_identity_token_file",
                         p->name, file_of(p));
    }
    if (rc == 0) {
        log_redact(source.secret_key);
        if (source.token[0]) log_redact(source.token);
        rc = sts_assume_role(&source, &role, out);
    }
    memset(&source, 0, sizeof source);
    return rc;
}

static int resolve(aws_credentials *out, const char **source) {
    memset(out, 0, sizeof *out);
    if (from_environment(out)) {
        *source = "environment";
        return 0;
    }
    aws_profile *profile = calloc(1, sizeof *profile);
    if (!profile) return error_set(EXIT_RESOURCES, "AWS credentials: out of memory");
    int rc = aws_profile_load(profile);
    // The SDKs' order: the profile's role, then web identity from the environment (EKS
    // service accounts set AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE), then the
    // profile's static keys.
    bool profile_role = rc == 0 && profile->role_arn[0] &&
                        (profile->source_profile[0] || profile->credential_source[0]);
    if (rc == 0 && !profile_role && env("AWS_WEB_IDENTITY_TOKEN_FILE") && env("AWS_ROLE_ARN")) {
        sts_role role = {.role_arn = env("AWS_ROLE_ARN"),
                         .session_name = env("AWS_ROLE_SESSION_NAME")};
        *source = "web-identity";
        rc = sts_assume_role_with_web_identity(&role, env("AWS_WEB_IDENTITY_TOKEN_FILE"), out);
    } else if (rc == 0) {
        *source = profile_source(profile, profile_role);
        rc = from_profile(profile, 0, out);
    }
    memset(profile, 0, sizeof *profile);
    free(profile);
    if (rc != 1) return rc;
    if (container_configured()) {
        *source = "container";
        return from_container(out);
    }
    *source = "instance-role";
    rc = from_instance_role(out);
    if (rc == 1)
        return error_set(EXIT_USAGE,
                         "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                         "AWS_PROFILE, or give the job a role (jobRoleArn) or the instance a "
                         "profile");
    return rc;
}

int aws_credentials_get(aws_credentials *out) {
    pthread_mutex_lock(&creds_lock);
    time_t now = time(NULL);
    if (creds_valid &&
        (creds_cached.expiration == 0 || creds_cached.expiration - now > REFRESH_BEFORE_S)) {
        *out = creds_cached;
        pthread_mutex_unlock(&creds_lock);
        return 0;
    }
    aws_credentials fresh;
    const char *source = "";
    int rc = resolve(&fresh, &source);
    if (rc == 0) {
        if (!creds_valid || strcmp(fresh.secret_key, creds_cached.secret_key) != 0) {
            log_redact(fresh.secret_key);
            if (fresh.token[0]) log_redact(fresh.token);
        }
        bool changed_source = strcmp(creds_source, source) != 0;
        creds_cached = fresh;
        creds_valid = true;
        snprintf(creds_source, sizeof creds_source, "%s", source);
        if (changed_source || fresh.expiration) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "source", source);
            cJSON_AddNumberToObject(f, "expires_in_s",
                                    fresh.expiration ? (double)(fresh.expiration - now) : -1);
            log_fields(LOG_INFO, "aws_credentials", f);
        }
        *out = fresh;
    } else if (creds_valid && creds_cached.expiration > now) {
        // The refresh failed but the old credentials still work for a while.
        log_warn("aws_credentials",
                 "refresh failed (%s); using the current credentials for %lld s more",
                 error_message(), (long long)(creds_cached.expiration - now));
        error_clear();
        *out = creds_cached;
        rc = 0;
    }
    pthread_mutex_unlock(&creds_lock);
    return rc;
}

void aws_credentials_invalidate(void) {
    pthread_mutex_lock(&creds_lock);
    creds_valid = false;
    pthread_mutex_unlock(&creds_lock);
}
