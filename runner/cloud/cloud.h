#pragma once
// The runner's view of AWS: S3 locations for inputs and artefacts, the spot-notice
// watcher, Step Functions task-token callbacks, ECS task metadata and Secrets Manager.
// Everything goes through libcurl (SigV4 by CURLOPT_AWS_SIGV4); see docs/aws.md.
//
// Environment read here (the AWS SDKs' names):
//   AWS_REGION / AWS_DEFAULT_REGION          region (default us-east-1)
//   AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3,   endpoint overrides (tests, moto, MinIO);
//   AWS_ENDPOINT_URL_SECRETS_MANAGER,        S3 is addressed path-style under an override
//   AWS_ENDPOINT_URL_SFN
//   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
//   AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE (the CLI's ~/.aws files),
//   AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE),
//   AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_EC2_METADATA_DISABLED
//   ECS_CONTAINER_METADATA_URI_V4, SFN_TASK_TOKEN, RUNNER_SFN_HEARTBEAT_S
//   RUNNER_S3_MULTIPART_THRESHOLD, RUNNER_S3_PART_SIZE (bytes), RUNNER_AWS_MAX_ATTEMPTS
//
// Errors follow runner/error.h: EXIT_REMOTE_IO (84) after the retries are spent,
// EXIT_BAD_INPUT (3) for a missing or forbidden object on reads, EXIT_OUTPUT (4) for a
// forbidden write, EXIT_USAGE (2) for a malformed URI.
#include "runner/config.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

// True for "s3://..." locations (the only remote scheme).
bool cloud_is_remote(const char *uri);

// s3://bucket/key -> local_path, written to a temporary name beside it and renamed,
// so local_path is either absent or complete. A local `uri` is left alone (returns 0).
int cloud_fetch(const char *uri, const char *local_path);

// Every object under s3://bucket/prefix/ (ListObjectsV2, following continuation
// tokens) -> local_dir/<key relative to prefix>, each one atomically. The prefix is a
// folder: "s3://b/run" lists "run/", never "run2/". An empty prefix returns 0 (a first
// attempt has no checkpoint to resume from). A local `uri` returns 0 without copying.
int cloud_fetch_prefix(const char *uri, const char *local_dir);

// Upload every regular file below local_dir to uri/<relative path> (same layout).
// `metadata` (a flat cJSON object of strings, may be NULL) becomes x-amz-meta-* on
// every object, with runner-version and, under Batch, batch-job-id and
// batch-job-attempt added. Files above the multipart threshold (default 64 MiB) go up in parts,
// each retried; the upload is completed only when every part succeeded and aborted
// otherwise, so no partial object ever exists under its final key. Files this process
// fetched from or uploaded to the same key, unchanged since (inode, size, mtime), are
// not sent again: call it after every checkpoint and at the end, it stays cheap.
int cloud_upload_tree(const char *local_dir, const char *uri, const cJSON *metadata);

// Preflight of an s3:// output: can the job write there? Checked without leaving an
// object behind (a multipart upload started and aborted under the prefix). 0 for a
// local path; EXIT_OUTPUT (4) when forbidden or the bucket does not exist, EXIT_USAGE
// for a malformed URI, EXIT_REMOTE_IO when S3 cannot be reached.
int cloud_check_output(const char *uri);

// Upload one file to s3://bucket/key (single PUT or multipart as above).
int cloud_upload_file(const char *local_path, const char *uri, const cJSON *metadata);

// Start a thread that polls IMDSv2 spot/instance-action every 5 s and calls
// on_notice(action, time) once when a notice appears (on that thread). Off when
// AWS_EC2_METADATA_DISABLED=true, or when not on EC2 (no IMDS answers the first token
// request); AWS_EC2_METADATA_SERVICE_ENDPOINT points it elsewhere (tests). Returns 0
// whether or not it started. cloud_spot_watcher_stop() joins the thread.
int cloud_spot_watcher_start(void (*on_notice)(const char *action, const char *time));
void cloud_spot_watcher_stop(void);

// Step Functions callback. With SFN_TASK_TOKEN set, cloud_sfn_start() starts a thread
// sending SendTaskHeartbeat every RUNNER_SFN_HEARTBEAT_S (default 60) seconds;
// without it both calls do nothing. cloud_sfn_finish() stops the heartbeat and sends
// SendTaskSuccess (code 0; output {"exit":"OK", ...output fields}) or
// SendTaskFailure (error = exit name, cause = reason). `output` (may be NULL) is an
// object whose fields (metrics summary, artefact URIs) are copied into the output.
// Call it once, from runner_exit().
int cloud_sfn_start(void);
// True when SFN_TASK_TOKEN is set (whether a summary for cloud_sfn_finish is wanted).
bool cloud_sfn_wanted(void);
void cloud_sfn_finish(int code, const char *reason, const cJSON *output);

// ECS task metadata v4 as log/metric labels: {"task_arn","cluster","availability_zone",
// "log_group","log_stream"} (only those present). NULL when
// ECS_CONTAINER_METADATA_URI_V4 is unset or the endpoint does not answer. Asked once
// per process, then answered from memory (forked workers inherit it). Caller frees.
cJSON *cloud_ecs_labels(void);

// Secrets Manager GetSecretValue: the SecretString parsed as JSON when it is JSON,
// else a JSON string. NULL with error_set() on failure. The value is registered with
// log_redact() before it is returned (every string of it, when it is JSON). Errors name
// `flag` (the option that named the secret: "--secret-id", "--hf-token-secret") and the id.
// Caller frees.
cJSON *cloud_secret_get(const char *flag, const char *secret_id);

// --secret-id: read the secret and fill the locations still at their defaults (flags,
// RUNNER_* variables and --config win). The secret is a JSON object; its keys, any
// case, are data, model, output, hyperspace, each optionally suffixed _uri, _path or
// _bucket; a value is an s3:// URI, a local path, or a bare bucket name (-> s3://name).
// 0 when cfg->secret_id is empty. Errors as cloud_secret_get().
int cloud_apply_secret(runner_config *cfg);

// The output a finished job hands to Step Functions (SendTaskSuccess): {"artefacts":
// "<output>/artefacts/<arch>/", "model": ".../prime/model/", "metrics": {"validating":
// score.json, "testing": score.json}} with the metrics that exist (read from S3 when the
// output is there). Never fails; caller frees.
cJSON *cloud_job_summary(const runner_config *cfg);
