#pragma once
// Progress of one Hub download (runner/cloud/hub.c): a "hub_download" JSON log line every
// 5 s and at the end (bytes, total, MiB/s, ETA), the job's progress on 6006/6007, and,
// when stderr is a terminal, a bar on stderr as huggingface_hub's tqdm draws one:
//
//   model.safetensors  [#######         ]  45% 40.1/86.7 MiB 12.3 MiB/s ETA 0:04
//
// redrawn in place (carriage return) at most 4 times a second, one column narrower than
// the terminal (the bar, then the file name's end, give way), and ended by a newline
// when the transfer stops ("in 0:07" then replaces the ETA). No bar when stderr is not a terminal, or when
// HF_HUB_DISABLE_PROGRESS_BARS is 1/true/yes/on (huggingface_hub's switch). While a bar
// is on the terminal, a log line written meanwhile first erases it (log_set_before_line)
// and the next redraw puts it back below.
#include <stdbool.h>

typedef struct {
    const char *file; // the repo's file name, shown and logged
    long long total, start_size; // bytes of the file; bytes there when this try began
    double started, last_log, last_draw; // timing_now_s()
    bool bar;         // drawing on stderr
} hub_progress;

// Start the progress of `file` (total bytes; `have` already on disk from an earlier try).
void hub_progress_begin(hub_progress *p, const char *file, long long have, long long total);
// The file has `size` bytes now: an aws_request on_sink_write hook (ud is the hub_progress).
void hub_progress_update(void *ud, long long size);
// The transfer stopped (done or not) at `size` bytes: the bar's last state and a newline.
void hub_progress_end(hub_progress *p, long long size);
// Whether a bar would be drawn now (stderr a terminal, bars not disabled).
bool hub_progress_bar_wanted(void);
