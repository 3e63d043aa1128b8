#!/bin/sh
# A short fuzzing pass for CI: each target for 20 s (override with FUZZ_SECONDS) on the committed
# corpus, new inputs kept in a scratch directory so that the tree is not changed. Skipped when
# cargo-fuzz is not installed. Exits non-zero if any target crashes; the reproducer is in
# fuzz/artifacts/<target>/. See docs/fuzzing.md.
set -eu
cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed (cargo install cargo-fuzz): skipping the fuzzing pass"
    exit 0
fi
# libFuzzer and ASan need nightly compiler flags; on a stable toolchain, allow them.
case "$(rustc -V)" in
    *nightly*) ;;
    *) export RUSTC_BOOTSTRAP=1 ;;
esac
seconds="${FUZZ_SECONDS:-20}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cargo fuzz build
for target in resp_read_reply resp_replies envelope; do
    echo "== $target: ${seconds} s"
    mkdir -p "$scratch/$target"
    cargo fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        2>&1 | grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|ERROR|panicked|SUMMARY' || true
    # `cargo fuzz run` fails on a crash; the pipe hides it, so look for a new artifact.
    if [ -n "$(find "artifacts/$target" -type f -newer "$scratch" 2>/dev/null)" ]; then
        echo "$target: crash, see fuzz/artifacts/$target/"
        exit 1
    fi
done
