#pragma once
// TensorBoard event-file writer: one file per run directory,
// `events.out.tfevents.{unix_seconds}.{hostname}.{pid}.{n}`, TFRecord framing
// (length, masked CRC-32C of the length, Event protobuf, masked CRC-32C of the data),
// first record Event{wall_time, file_version "brain.Event:2"}, then one Event per scalar
// with Summary.Value{tag, simple_value}. Not thread-safe: telemetry.c serialises calls.
#include <stdint.h>

typedef struct tfevents_writer tfevents_writer;

// Create `logdir` (and parents) and open a new event file in it. NULL with error_set()
// (EXIT_OUTPUT) when the directory or file cannot be created.
tfevents_writer *tfevents_open(const char *logdir);
// Append one scalar event. Returns 0 or an exit code (EXIT_OUTPUT) on a write error.
int tfevents_scalar(tfevents_writer *w, const char *tag, int64_t step, double value,
                    double wall_time);
// Push buffered records to the file (fflush). Returns 0 or EXIT_OUTPUT.
int tfevents_flush(tfevents_writer *w);
// The file's path (for logs and tests).
const char *tfevents_path(const tfevents_writer *w);
// Flush and close; NULL is allowed.
void tfevents_close(tfevents_writer *w);
