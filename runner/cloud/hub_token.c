// The Hugging Face token, looked for where huggingface_hub looks (get_token), then in
// AWS Secrets Manager when --hf-token-secret names a secret. Whatever gives it, it is
// registered with log_redact(): no log line, API answer or dashboard shows it.
#include "runner/cloud/hub_internal.h"

#include "runner/cloud/aws.h"
#include "runner/cloud/cloud.h"
#include "runner/error.h"
#include "runner/job/files.h"
#include "runner/log.h"

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *getenv_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

// The token of a Secrets Manager secret (--hf-token-secret): the SecretString itself,
// or a JSON object's HF_TOKEN (else token) key, any case.
static int token_from_secret(const char *secret_id, char *token, size_t cap) {
    cJSON *secret = cloud_secret_get("--hf-token-secret", secret_id); // redacts every string
    if (!secret) return error_code() ? error_code() : EXIT_REMOTE_IO;
    const cJSON *v = secret;
    if (cJSON_IsObject(secret)) {
        v = cJSON_GetObjectItem(secret, "HF_TOKEN");
        if (!v) v = cJSON_GetObjectItem(secret, "token");
    }
    int rc = 0;
    const char *text = cJSON_IsString(v) ? v->valuestring : "";
    while (isspace((unsigned char)*text)) text++; // pasted with a newline, as files often are
    size_t len = strlen(text);
    while (len && isspace((unsigned char)text[len - 1])) len--;
    bool clean = len > 0;
    for (size_t i = 0; i < len; i++) clean = clean && !iscntrl((unsigned char)text[i]);
    if (!clean)
        rc = error_set(EXIT_BAD_INPUT, "--hf-token-secret %s: the secret is neither a token nor "
                       "a JSON object with an HF_TOKEN or token key", secret_id);
    else if (len >= cap)
        rc = error_set(EXIT_BAD_INPUT, "--hf-token-secret %s: longer than a token can be",
                       secret_id);
    else {
        snprintf(token, cap, "%.*s", (int)len, text); // goes into an Authorization header
        log_redact(token);
    }
    cJSON_Delete(secret);
    if (rc == 0)
        log_info("hub_token", "the Hugging Face token comes from Secrets Manager (%s)", secret_id);
    return rc;
}

// HF_TOKEN, HUGGING_FACE_HUB_TOKEN, the file HF_TOKEN_PATH or $HF_HOME/token, as
// huggingface_hub looks; then, only when none gives one, the secret `secret_id` names.
int hub_token_load(const char *secret_id, char *token, size_t cap) {
    token[0] = '\0';
    const char *v = getenv_nonempty("HF_TOKEN");
    if (!v) v = getenv_nonempty("HUGGING_FACE_HUB_TOKEN");
    if (v) {
        if (strlen(v) >= cap)
            return error_set(EXIT_USAGE, "HF_TOKEN is longer than a token can be");
        snprintf(token, cap, "%s", v);
        log_redact(token);
        return 0;
    }
    char path[PATH_MAX];
    const char *what = "HF_TOKEN_PATH";
    if ((v = getenv_nonempty("HF_TOKEN_PATH"))) {
        snprintf(path, sizeof path, "%s", v);
    } else {
        char home[PATH_MAX];
        bool have_home = hub_home_dir(home, sizeof home) == 0;
        if (!have_home) error_clear();
        if (have_home && files_join(path, sizeof path, "%s/token", home)) return EXIT_USAGE;
        what = "the Hugging Face token file";
        if (!have_home || access(path, F_OK) != 0) // no token file: the secret, else anonymous
            return secret_id && *secret_id ? token_from_secret(secret_id, token, cap) : 0;
    }
    return aws_read_token_file(path, what, token, cap);
}
