// Secrets Manager GetSecretValue (JSON protocol 1.1). The original job read its bucket
// names from a secret; the runner does when --secret-id names one, and reads the Hugging
// Face token from one when --hf-token-secret names it (runner/cloud/hub.c).
#include "runner/cloud/aws.h"
#include "runner/cloud/cloud.h"

#include "runner/error.h"
#include "runner/log.h"

#include <string.h>

// Every string inside a secret's JSON is a secret too.
static void redact_strings(const cJSON *node) {
    if (cJSON_IsString(node) && node->valuestring[0]) log_redact(node->valuestring);
    const cJSON *child;
    cJSON_ArrayForEach(child, node) redact_strings(child);
}

cJSON *cloud_secret_get(const char *flag, const char *secret_id) {
    if (!secret_id || !*secret_id) {
        error_set(EXIT_USAGE, "%s: empty", flag);
        return NULL;
    }
    char what[400];
    snprintf(what, sizeof what, "GetSecretValue %s", secret_id);
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddStringToObject(payload, "SecretId", secret_id);
    aws_response resp = {0};
    int rc = aws_json_call("secretsmanager", "SECRETS_MANAGER", "secretsmanager", "1.1",
                           "secretsmanager.GetSecretValue", payload, &resp, what);
    cJSON_Delete(payload);
    cJSON *result = NULL;
    if (rc == 0 && resp.status != 200) {
        const char *code = resp.error_code;
        if (strcmp(code, "ResourceNotFoundException") == 0)
            error_set(EXIT_USAGE, "%s %s: no such secret", flag, secret_id);
        else if (resp.status == 403 || strstr(code, "AccessDenied"))
            error_set(EXIT_BAD_INPUT, "%s %s: access denied (%s)", flag, secret_id, code);
        else
            error_set(EXIT_REMOTE_IO, "%s: HTTP %ld %s", what, resp.status, code);
    } else if (rc == 0) {
        cJSON *answer = cJSON_ParseWithLength(resp.body.data, resp.body.len);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(answer, "SecretString");
        if (!cJSON_IsString(s)) {
            error_set(EXIT_BAD_INPUT, "%s %s: no SecretString (binary secrets are not "
                      "supported)", flag, secret_id);
        } else {
            log_redact(s->valuestring);
            result = cJSON_Parse(s->valuestring);
            if (!result) result = cJSON_CreateString(s->valuestring);
            else redact_strings(result);
            log_info("secret", "read secret %s", secret_id);
        }
        cJSON_Delete(answer);
    }
    aws_response_free(&resp);
    return result;
}
