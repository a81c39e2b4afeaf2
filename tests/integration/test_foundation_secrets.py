"""Passwords, tokens and keys never reach the output (DESIGN §6, issue 2 item 6)."""
import json

from conftest import base_env, run

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLETOKEN0123456789",
    "REDIS_PASSWORD": "redis-pass-4711",
    "RUNNER_API_TOKEN": "api-token-0815-secret",
}
URL_PASSWORD = "url-password-31337"


def all_output(proc):
    return proc.stdout + proc.stderr


def assert_clean(text):
    for value in [*SECRETS.values(), URL_PASSWORD]:
        assert value not in text, f"secret {value!r} leaked"


def test_secrets_from_env_and_url_never_logged(runner_bin, tmp_path):
    env = base_env(**SECRETS, RUNNER_SHM_PATH=tmp_path,
                   RUNNER_REDIS=f"redis://:{URL_PASSWORD}@127.0.0.1:1")
    # --check: the effective configuration is in the report
    proc = run(runner_bin, "--check", "--json", env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert_clean(all_output(proc))
    report = json.loads(proc.stdout.splitlines()[0])
    assert report["config"]["redis"] == "redis://:***@127.0.0.1:1"
    # a run that logs its configuration and stops in preflight
    proc = run(runner_bin, "--min-shm", "1000000gb", "--no-serve", env=env, timeout=60)
    assert proc.returncode == 5
    assert '"event":"start"' in proc.stdout
    assert_clean(all_output(proc))


def test_secret_echoed_in_an_error_is_redacted(runner_bin, asan_bin):
    env = base_env(**SECRETS)
    for binary in (runner_bin, asan_bin):
        # a person pastes a secret where a number goes: the error quotes the value
        proc = run(binary, "--epochs", SECRETS["REDIS_PASSWORD"], env=env, timeout=60)
        assert proc.returncode == 2
        assert "***" in proc.stderr and "--epochs" in proc.stderr
        assert_clean(all_output(proc))
        proc = run(binary, "--architecture", SECRETS["AWS_SESSION_TOKEN"], env=env, timeout=60)
        assert proc.returncode == 2
        assert_clean(all_output(proc))


def test_text_logs_are_redacted_too(runner_bin, tmp_path):
    env = base_env(**SECRETS, RUNNER_SHM_PATH=tmp_path,
                   RUNNER_REDIS=f"redis://user:{URL_PASSWORD}@10.1.2.3:6379")
    proc = run(runner_bin, "--log-format", "text", "--min-shm", "1000000gb", "--no-serve",
               env=env, timeout=60)
    assert proc.returncode == 5
    assert "INFO  start" in proc.stdout
    assert_clean(all_output(proc))
