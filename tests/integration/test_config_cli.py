"""Configuration from the outside (SPEC §2, §3): bad flags and bad config
files make sluice exit 2 with one sentence on stderr naming the option, before
it listens anywhere; --check-config, --help and --version print and exit 0.
"""
import json
import os

import subprocess

import pytest

from conftest import BUILD, ROOT, SANITIZER_MARKS

SLUICE = os.path.join(BUILD, "sluice")
EXAMPLE = os.path.join(ROOT, "examples", "proxy_config.json")
CHECK_OK = "sluice: configuration OK\n"


def run(*args):
    """Runs sluice with args; returns (exit status, stdout, stderr) as text."""
    p = subprocess.run([SLUICE] + [str(a) for a in args], capture_output=True, timeout=20)
    for mark in SANITIZER_MARKS:
        assert mark not in p.stderr, p.stderr.decode(errors="replace")
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def expect_refused(args, *fragments):
    """sluice must exit 2 with a single line `sluice: ...` holding every fragment."""
    code, out, err = run(*args)
    assert code == 2, (code, out, err)
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("sluice: "), repr(err)
    for f in fragments:
        assert f in err, (f, err)
    return err


def write(tmp_path, text, name="sluice.json"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def check_config(*args):
    """Runs --check-config; returns the effective settings it printed. stdout
    is the JSON alone (so `| jq` works); the human line goes to stderr."""
    code, out, err = run(*args, "--check-config")
    assert code == 0, (code, out, err)
    assert err == CHECK_OK, err
    return json.loads(out)


# ---- bad command lines ----

@pytest.mark.parametrize("args, fragments", [
    ([], ["--target-host is required (the upstream to forward to)"]),
    (["--target-host", "u", "--bogus"], ["unknown option --bogus (see --help)"]),
    (["--target-host", "u", "--max-concurent-requests", "3"],
     ["unknown option --max-concurent-requests; did you mean --max-concurrent-requests?"]),
    (["--target-host", "u", "--max-queue", "3"], ["did you mean --max-queue-size?"]),
    (["--target-host", "u", "--raed-timeout=3"], ["unknown option --raed-timeout; did you mean --read-timeout?"]),
    (["--target-host", "u", "--target-hots", "x"], ["did you mean --target-host?"]),
    (["--target-host", "u", "--bogus=3"], ["unknown option --bogus"]),
    (["--target-host", "u", "stray"], ['unexpected argument "stray"']),
    (["--target-host", "u", "--read-timeout"], ["--read-timeout needs a value"]),
    (["--target-host", "u", "--read-timeout", "abc"],
     ['--read-timeout must be a number of seconds between 0.001 and 86400, got "abc"']),
    (["--target-host", "u", "--read-timeout=10s"], ["--read-timeout", '"10s"']),
    (["--target-host", "u", "--connect-timeout", "0"], ["--connect-timeout", '"0"']),
    (["--target-host", "u", "--listen-port", "70000"],
     ['--listen-port must be a port number between 1 and 65535, got "70000"']),
    (["--target-host", "u", "--workers", "0"], ["--workers must be an integer between 1 and 256"]),
    (["--target-host", "u", "--workers", "2.5"], ["--workers", '"2.5"']),
    (["--target-host", "u", "--max-concurrent", "0"], ["--max-concurrent must be an integer"]),
    (["--target-host", "u", "--max-retries", "11"], ["--max-retries", "between 0 and 10"]),
    (["--target-host", "u", "--max-header-size", "100"], ["--max-header-size", "1024"]),
    (["--target-host", "u", "--log-level", "loud"],
     ['--log-level must be one of error, warn, info, debug, got "loud"']),
    (["--target-host", "u", "--pool-connections", "60", "--pool-maxsize", "50"],
     ["--pool-connections (60) must not exceed --pool-maxsize (50)"]),
    (["--target-host", "u", "--listen-port", "9000", "--admin-port", "9000"],
     ["--admin-port must differ from --listen-port"]),
    (["--target-host", "u", "--check-config=1"], ["--check-config takes no value"]),
])
def test_bad_flag_exits_2_naming_it(args, fragments):
    expect_refused(args, *fragments)


# ---- bad config files ----

def test_invalid_json_reports_line_and_column(tmp_path):
    path = write(tmp_path, '{\n  "target_host": "u",\n  "read_timeout": 30,,\n}\n')
    expect_refused(["--config", path], "config file %s: invalid JSON at line 3, column 22" % path)


@pytest.mark.parametrize("text, fragments", [
    ('["target_host"]', ["the top level must be a JSON object"]),
    ('{"target_host": "u", "bogus_key": 1}', ['unknown key "bogus_key" at line 1 (see --help']),
    ('{\n  "target_host": "u",\n  "max_concurent_requests": 5\n}',
     ['unknown key "max_concurent_requests" at line 3; did you mean "max_concurrent_requests"?']),
    ('{"target_host": "u",\n "pool_max_size": 5}', ['at line 2; did you mean "pool_maxsize"?']),
    ('{"target_host": "u", "config": "other.json"}', ['"config" can only be given on the command line']),
    ('{"target_host": "u", "workers": 1.5}', ["workers (--workers) must be an integer", "got 1.5"]),
    ('{"target_host": "u", "listen_port": "8080"}', ["--listen-port", 'got "8080"']),
    ('{"target_host": "u", "read_timeout": null}', ["--read-timeout", "got null"]),
    ('{"target_host": "u", "read_timeout": "10s"}', ["--read-timeout", 'got "10s"']),
    ('{"target_host": "u", "max_retries": 99}', ["--max-retries", "got 99"]),
    ('{"target_host": ""}', ["--target-host", 'got ""']),
    ('{"listen_port": 8081}', ["--target-host is required"]),
])
def test_bad_config_file_exits_2_naming_the_key(tmp_path, text, fragments):
    path = write(tmp_path, text)
    expect_refused(["--config", path], *fragments)


def test_unreadable_config_file(tmp_path):
    missing = str(tmp_path / "absent.json")
    expect_refused(["--config", missing, "--target-host", "u"],
                   "cannot read config file %s: No such file or directory" % missing)


def test_command_line_error_wins_over_file(tmp_path):
    path = write(tmp_path, '{"target_host": "u"}')
    expect_refused(["--config", path, "--queue-timeout", "-3"], '--queue-timeout', '"-3"')


# ---- --check-config, --help, --version ----

def test_check_config_prints_effective_settings(tmp_path):
    path = write(tmp_path, json.dumps({
        "target_host": "up.internal", "target_port": 3128, "read_timeout": 300,
        "max_concurrent": 7, "retry_backoff": 0.25, "max_queue_size": 200}))
    # The command line overrides the file even when --config comes last.
    cfg = check_config("--max-queue-size", "5", "--write-timeout=0.1", "--config", path)
    assert cfg["config"] == path
    assert cfg["target_host"] == "up.internal"
    assert cfg["target_port"] == 3128
    assert cfg["read_timeout"] == 300
    assert cfg["max_concurrent_requests"] == 7
    assert cfg["retry_backoff_factor"] == 0.25
    assert cfg["max_queue_size"] == 5
    assert cfg["write_timeout"] == 0.1
    assert cfg["listen_port"] == 8080 and cfg["max_retries"] == 2
    assert cfg["retry_buffer_size"] == 65536
    assert cfg["admin_port"] is None and cfg["access_log"] is None
    assert cfg["workers"] >= 1


def test_check_config_output_reads_back_as_a_config_file(tmp_path):
    first = check_config("--target-host", "u", "--admin-port", "9999", "--log-level", "debug")
    del first["config"]
    path = write(tmp_path, json.dumps(first), "effective.json")
    second = check_config("--config", path)
    del second["config"]
    assert second == first


def test_check_config_invalid_exits_2():
    expect_refused(["--check-config", "--target-host", "u", "--workers", "1000"], "--workers")


def test_example_config_is_valid():
    cfg = check_config("--config", EXAMPLE)
    with open(EXAMPLE) as f:
        example = json.load(f)
    for key, value in example.items():
        assert cfg[key] == value, key


def test_help_lists_every_option():
    code, out, err = run("--help")
    assert code == 0 and err == ""
    for flag in ("--config", "--listen-host", "--listen-port", "--target-host", "--target-port",
                 "--connect-timeout", "--read-timeout", "--write-timeout",
                 "--max-concurrent-requests", "--max-concurrent", "--max-queue-size",
                 "--queue-timeout", "--pool-maxsize", "--pool-idle-timeout", "--pool-connections",
                 "--max-retries", "--retry-backoff-factor", "--retry-backoff", "--retry-backoff-max",
                 "--retry-buffer-size", "--circuit-breaker-threshold", "--circuit-breaker-timeout",
                 "--client-header-timeout", "--client-idle-timeout", "--max-header-size",
                 "--max-body-size", "--max-connections", "--workers", "--admin-port",
                 "--shutdown-timeout", "--access-log", "--log-level", "--check-config", "--help",
                 "--version"):
        assert flag in out, flag
    assert "[default 120]" in out  # read-timeout's default is shown
    assert run("-h")[:2] == (0, out)


def test_version():
    assert run("--version") == (0, "sluice 0.1.0\n", "")
    assert run("-V") == (0, "sluice 0.1.0\n", "")


# ---- the target, as people write it ----

@pytest.mark.parametrize("given, host, port", [
    (["--target-host", "ssrf-proxy:8888"], "ssrf-proxy", 8888),
    (["--target-host", "http://ssrf-proxy:8888"], "ssrf-proxy", 8888),
    (["--target-host", "http://ssrf-proxy:8888/"], "ssrf-proxy", 8888),
    (["--target-host", "HTTP://ssrf-proxy"], "ssrf-proxy", 80),
    (["--target-host", "http://ssrf-proxy", "--target-port", "3128"], "ssrf-proxy", 3128),
    (["--target-host", "x:3128", "--target-port", "3128"], "x", 3128),
    (["--target-host", "[::1]:9000"], "::1", 9000),
    (["--target-host", "[fd00::5]"], "fd00::5", 8000),
    (["--target-host", "::1"], "::1", 8000),
    (["--target-host", "10.0.0.7"], "10.0.0.7", 8000),
])
def test_target_forms_are_understood(given, host, port):
    cfg = check_config(*given)
    assert (cfg["target_host"], cfg["target_port"]) == (host, port)


def test_target_url_in_the_config_file(tmp_path):
    path = write(tmp_path, '{"target_host": "http://squid.internal:3128"}')
    cfg = check_config("--config", path)
    assert (cfg["target_host"], cfg["target_port"]) == ("squid.internal", 3128)


@pytest.mark.parametrize("args, fragments", [
    (["--target-host", "x:8888", "--target-port", "8000"],
     ['--target-host "x:8888" names port 8888 but --target-port is 8000: give the port once']),
    (["--target-host", "http://x:8888/v1/chat"], ["has a path", "use --target-host x:8888"]),
    (["--target-host", "ftp://x"], ["the schemes it takes are http:// and https://"]),
    (["--target-host", "https://x:8443/v1"], ["has a path", "use --target-host x:8443"]),
    (["--target-host", "user@x"], ["is not a host"]),
    (["--target-host", "x:"], ["port after ':' must be a number between 1 and 65535"]),
    (["--target-host", "x:99999"], ["port after ':'"]),
    (["--target-host", "[::1"], ["[address]:port"]),
    (["--target-host", "http://"], ["is not a host"]),
])
def test_bad_target_exits_2_with_the_fix(args, fragments):
    expect_refused(args, *fragments)
