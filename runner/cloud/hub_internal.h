#pragma once
// What the parts of the Hub client share (hub.c, hub_token.c); see hub.h.
#include <stddef.h>

// $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface, into out[n].
int hub_home_dir(char *out, size_t n);

// The token into token[cap] ("" when anonymous): HF_TOKEN, else HUGGING_FACE_HUB_TOKEN,
// else the file HF_TOKEN_PATH or $HF_HOME/token, else, when `secret_id` (NULL or "" for
// none) names one, the Secrets Manager secret: its string, or its JSON's HF_TOKEN (else
// token) key. Registered with log_redact(). 0; EXIT_USAGE for a bad variable or token
// file, the errors of cloud_secret_get() for the secret, EXIT_BAD_INPUT for a secret
// holding no token.
int hub_token_load(const char *secret_id, char *token, size_t cap);
