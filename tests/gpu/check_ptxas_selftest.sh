#!/usr/bin/env bash
# scripts/check-ptxas must pass a clean ptxas report and fail one with a spill, one with
# local memory, one with a stack frame, and a directory without reports. No GPU needed.
set -uo pipefail
check="$(cd "$(dirname "$0")/../.." && pwd)/scripts/check-ptxas"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0

report() { # name arch stack stores loads lmem_suffix
    cat <<EOT
ptxas info    : Compiling entry function '$1' for '$2'
ptxas info    : Function properties for $1
    $3 bytes stack frame, $4 bytes spill stores, $5 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers$6, 380 bytes cmem[0]
EOT
}

expect() { # want(0|1) what
    "$check" "$dir/case" >"$dir/out" 2>&1
    local rc=$?
    if { [[ $1 == 0 ]] && ((rc != 0)); } || { [[ $1 == 1 ]] && ((rc == 0)); }; then
        echo "FAIL: $2 (exit $rc)"; cat "$dir/out"; failures=$((failures + 1))
    else
        echo "ok: $2"
    fi
}

mkdir -p "$dir/case"
expect 1 "no reports at all"
{ report _Z3fooPf sm_80 0 0 0 ""; report _Z3fooPf sm_90 0 0 0 ""; } >"$dir/case/a.ptxas.log"
expect 0 "clean report"
report _Z3barPf sm_90 0 8 0 "" >"$dir/case/b.ptxas.log"
expect 1 "spill stores"
report _Z3barPf sm_90 0 0 4 "" >"$dir/case/b.ptxas.log"
expect 1 "spill loads"
report _Z3barPf sm_80 0 0 0 ", 16 bytes lmem" >"$dir/case/b.ptxas.log"
expect 1 "local memory"
report _Z3barPf sm_80 24 0 0 "" >"$dir/case/b.ptxas.log"
expect 1 "stack frame"
report _Z3barPf sm_80 0 0 0 "" >"$dir/case/b.ptxas.log"
expect 0 "clean again"
exit $((failures > 0))
