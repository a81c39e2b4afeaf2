// The AWS CLI's shared files for one profile (see aws.h): static keys and role settings
// from the credentials file, else from the config file, and the config file's region.
// Read with inih, the INI reader Debian ships; the lookup rules are the SDKs':
//   credentials file   [NAME]                       aws_access_key_id, role_arn, ...
//   config file        [default] / [profile NAME]   the same keys, and region
//   config file        [sso-session NAME]           sso_start_url, sso_region
// Every key that asks for credentials is kept (an MFA prompt too, so that the chain can
// refuse it by name), so a job never runs with other credentials than the ones its
// profile asks for.
#include "runner/cloud/aws.h"

#include "runner/error.h"

#include <errno.h>
#include <stddef.h>
#include <ini.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *section;  // the section that holds the profile in this file
    aws_profile *profile; // filled as keys are met
    bool seen;            // the section exists
    char access_key[sizeof(((aws_credentials *)0)->access_key)];
    char secret_key[sizeof(((aws_credentials *)0)->secret_key)];
    char token[sizeof(((aws_credentials *)0)->token)];
} file_scan;

// The string settings, each a field of aws_profile named as the key. The files are
// scanned credentials file first, and a setting already taken is kept: that file wins.
#define PROFILE_KEY(field)                                                                 \
    {#field, offsetof(aws_profile, field), sizeof(((aws_profile *)0)->field)}
static const struct {
    const char *name;
    size_t offset, size;
} PROFILE_KEYS[] = {
    PROFILE_KEY(role_arn),           PROFILE_KEY(source_profile),
    PROFILE_KEY(credential_source),  PROFILE_KEY(web_identity_token_file),
    PROFILE_KEY(role_session_name),  PROFILE_KEY(external_id),
    PROFILE_KEY(mfa_serial),         PROFILE_KEY(credential_process),
    PROFILE_KEY(sso_session),        PROFILE_KEY(sso_start_url),
    PROFILE_KEY(sso_region),         PROFILE_KEY(sso_account_id),
    PROFILE_KEY(sso_role_name),
};
#undef PROFILE_KEY

static int on_key(void *user, const char *section, const char *name, const char *value) {
    file_scan *scan = user;
    aws_profile *p = scan->profile;
    if (strcmp(section, scan->section) != 0) return 1;
    scan->seen = true;
    if (strcmp(name, "aws_access_key_id") == 0)
        aws_copy(scan->access_key, sizeof scan->access_key, value);
    else if (strcmp(name, "aws_secret_access_key") == 0)
        aws_copy(scan->secret_key, sizeof scan->secret_key, value);
    else if (strcmp(name, "aws_session_token") == 0)
        aws_copy(scan->token, sizeof scan->token, value);
    else if (strcmp(name, "region") == 0 && !p->region[0])
        aws_copy(p->region, sizeof p->region, value);
    else if (strcmp(name, "duration_seconds") == 0 && !p->duration_seconds)
        p->duration_seconds = atoi(value) > 0 ? atoi(value) : -1; // -1: not a number
    for (size_t i = 0; i < sizeof PROFILE_KEYS / sizeof PROFILE_KEYS[0]; i++) {
        char *field = (char *)p + PROFILE_KEYS[i].offset;
        if (strcmp(name, PROFILE_KEYS[i].name) == 0 && !field[0])
            aws_copy(field, PROFILE_KEYS[i].size, value);
    }
    return 1;
}

// One [sso-session NAME] section of the config file.
typedef struct {
    const char *section;
    bool seen;
    char start_url[sizeof(((aws_profile *)0)->sso_start_url)];
    char region[sizeof(((aws_profile *)0)->sso_region)];
} session_scan;

static int on_session_key(void *user, const char *section, const char *name,
                          const char *value) {
    session_scan *scan = user;
    if (strcmp(section, scan->section) != 0) return 1;
    scan->seen = true;
    if (strcmp(name, "sso_start_url") == 0 && !scan->start_url[0])
        aws_copy(scan->start_url, sizeof scan->start_url, value);
    else if (strcmp(name, "sso_region") == 0 && !scan->region[0])
        aws_copy(scan->region, sizeof scan->region, value);
    return 1;
}

// A session value into the profile's field; a profile that gives another value is a
// configuration botocore refuses too (InvalidConfigError), so the runner does.
static int merge_session_value(aws_profile *p, const char *key, char *field, size_t size,
                               const char *value) {
    if (!value[0]) return 0;
    if (field[0] && strcmp(field, value) != 0)
        return error_set(EXIT_USAGE, "AWS profile %s: %s is %s in the profile but %s in its "
                                     "sso-session %s", p->name, key, field, value,
                         p->sso_session);
    aws_copy(field, size, value);
    return 0;
}

// `variable`, else $HOME/.aws/<name>; false when neither gives a path.
static bool file_path(const char *variable, const char *name, char *out, size_t cap) {
    const char *set = getenv(variable);
    if (set && *set) return (size_t)snprintf(out, cap, "%s", set) < cap;
    const char *home = getenv("HOME");
    return home && *home && (size_t)snprintf(out, cap, "%s/.aws/%s", home, name) < cap;
}

// Why reading the files failed, for the caller to report (or not).
typedef struct {
    const char *path;
    int ini_rc; // inih's: -1 cannot open (errno), -2 no memory, N > 0 first bad line
    int saved_errno;
} read_failure;

// Scan one file for the profile's section; a missing file is no failure.
static bool scan_file(const char *path, file_scan *scan, read_failure *why) {
    errno = 0;
    int rc = ini_parse(path, on_key, scan);
    if (rc == 0 || (rc == -1 && (errno == ENOENT || errno == ENOTDIR))) return true;
    *why = (read_failure){.path = path, .ini_rc = rc, .saved_errno = errno};
    return false;
}

static void take_keys(const file_scan *scan, aws_profile *out, const char *path) {
    if (out->credentials.access_key[0] || !scan->access_key[0] || !scan->secret_key[0]) return;
    aws_copy(out->credentials.access_key, sizeof out->credentials.access_key, scan->access_key);
    aws_copy(out->credentials.secret_key, sizeof out->credentials.secret_key, scan->secret_key);
    aws_copy(out->credentials.token, sizeof out->credentials.token, scan->token);
    aws_copy(out->keys_from, sizeof out->keys_from, path);
}

// The profile AWS_PROFILE names, else "default".
static const char *current_name(void) {
    const char *named = getenv("AWS_PROFILE");
    return named && *named ? named : "default";
}

// Fill `out` from the files; false (with `why`) when one cannot be read or parsed.
static bool profile_read(const char *name, aws_profile *out, read_failure *why) {
    memset(out, 0, sizeof *out);
    aws_copy(out->name, sizeof out->name, name);

    char config_section[sizeof out->name + 8];
    if (strcmp(out->name, "default") == 0)
        snprintf(config_section, sizeof config_section, "default");
    else
        snprintf(config_section, sizeof config_section, "profile %s", out->name);

    bool have_credentials = file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials",
                                      out->credentials_file, sizeof out->credentials_file);
    bool have_config =
        file_path("AWS_CONFIG_FILE", "config", out->config_file, sizeof out->config_file);
    if (!have_credentials) out->credentials_file[0] = '\0';
    if (!have_config) out->config_file[0] = '\0';

    file_scan credentials = {.section = out->name, .profile = out};
    file_scan config = {.section = config_section, .profile = out};
    bool ok = (!have_credentials || scan_file(out->credentials_file, &credentials, why)) &&
              (!have_config || scan_file(out->config_file, &config, why));
    if (ok) {
        // The credentials file wins over the config file, as in the SDKs.
        take_keys(&credentials, out, out->credentials_file);
        take_keys(&config, out, out->config_file);
        out->found = credentials.seen || config.seen;
    }
    // The scans hold keys in buffers of their own: clear them (the copies in `out` are
    // the caller's, which registers them with log_redact()).
    memset(&credentials, 0, sizeof credentials);
    memset(&config, 0, sizeof config);
    return ok;
}

// Fill the profile's SSO start URL and region from the [sso-session NAME] section it
// names (only the config file holds such sections, as in the AWS CLI).
static int resolve_sso_session(aws_profile *p) {
    char section[sizeof p->sso_session + 16];
    snprintf(section, sizeof section, "sso-session %s", p->sso_session);
    session_scan scan = {.section = section};
    int rc = p->config_file[0] ? ini_parse(p->config_file, on_session_key, &scan) : -1;
    if (rc == -2) return error_set(EXIT_RESOURCES, "%s: out of memory", p->config_file);
    if (!scan.seen)
        return error_set(EXIT_USAGE, "AWS profile %s: its sso_session %s has no "
                                     "[sso-session %s] section in %s", p->name, p->sso_session,
                         p->sso_session, p->config_file[0] ? p->config_file : "(no config file)");
    int merged = merge_session_value(p, "sso_start_url", p->sso_start_url,
                                     sizeof p->sso_start_url, scan.start_url);
    if (merged == 0)
        merged = merge_session_value(p, "sso_region", p->sso_region, sizeof p->sso_region,
                                     scan.region);
    return merged;
}

bool aws_profile_uses_sso(const aws_profile *p) {
    return p->sso_account_id[0] || p->sso_role_name[0];
}

// `asked_by` names what asked for the profile by name ("AWS_PROFILE", "source_profile"),
// so that it must exist; NULL for the implicit "default", which need not.
static int profile_load(const char *name, const char *asked_by, aws_profile *out) {
    read_failure why = {0};
    if (!profile_read(name, out, &why)) {
        if (why.ini_rc == -2) return error_set(EXIT_RESOURCES, "%s: out of memory", why.path);
        if (why.ini_rc > 0)
            return error_set(EXIT_USAGE, "%s:%d: not a line of an AWS config file", why.path,
                             why.ini_rc);
        return error_set(EXIT_USAGE, "%s: cannot read: %s", why.path, strerror(why.saved_errno));
    }
    if (asked_by && !out->found)
        return error_set(EXIT_USAGE, "%s %s: no such profile in %s or %s", asked_by, out->name,
                         out->credentials_file[0] ? out->credentials_file : "(no credentials file)",
                         out->config_file[0] ? out->config_file : "(no config file)");
    if (out->duration_seconds < 0)
        return error_set(EXIT_USAGE, "AWS profile %s: duration_seconds is not a positive number",
                         out->name);
    if (out->sso_session[0] && aws_profile_uses_sso(out)) return resolve_sso_session(out);
    return 0;
}

int aws_profile_load(aws_profile *out) {
    const char *named = getenv("AWS_PROFILE");
    return profile_load(current_name(), named && *named ? "AWS_PROFILE" : NULL, out);
}

int aws_profile_load_named(const char *name, aws_profile *out) {
    return profile_load(name, "source_profile", out);
}

// The region of the profile, read once (the first caller pays for the two small files).
static pthread_once_t region_once = PTHREAD_ONCE_INIT;
static char profile_region[64];

// Quietly: a file the region cannot be read from is reported by the credentials chain,
// which reads the same files, and a region lookup must not overwrite the caller's error.
static void load_region(void) {
    aws_profile p;
    read_failure why;
    if (profile_read(current_name(), &p, &why))
        aws_copy(profile_region, sizeof profile_region, p.region);
    memset(&p.credentials, 0, sizeof p.credentials);
}

const char *aws_profile_region(void) {
    pthread_once(&region_once, load_region);
    return profile_region[0] ? profile_region : NULL;
}
