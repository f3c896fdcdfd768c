"""The deployment kit and the quick start: the example config loads, the
systemd unit verifies, the Kubernetes manifests parse and agree with each
other and with the config they carry, the Dockerfile's build stage builds from
exactly what it copies and its HEALTHCHECK works, `make install` places the
files, and scripts/start.sh starts a working sluice.

Tools that may be missing (systemd-analyze, python3-yaml, kubectl, man) make
the tests that need them skip with the reason.
"""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT, Proc, free_port, http_get, wait_listening

DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")
EXAMPLE = os.path.join(ROOT, "examples", "proxy_config.json")
SLUICE = os.path.join(BUILD, "sluice")


def check_config(path):
    """Runs sluice --check-config on a file: (exit code, effective settings or None, stderr)."""
    r = subprocess.run([SLUICE, "--config", path, "--check-config"], capture_output=True, text=True, timeout=30)
    settings = None
    if r.returncode == 0:
        settings = json.loads(r.stdout[r.stdout.index("{"):])
    return r.returncode, settings, r.stderr


def read(path):
    with open(path) as f:
        return f.read()


def make_env():
    """The environment for a nested make that must not inherit an outer
    make's command-line variables (BUILD, SAN) through MAKEFLAGS."""
    env = os.environ.copy()
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    return env


def build_arg():
    """BUILD as the Makefile should see it: relative to the repository when
    inside it, so the dependency files it wrote still match."""
    rel = os.path.relpath(BUILD, ROOT)
    return BUILD if rel.startswith("..") else rel


# ---- the example config --------------------------------------------------------


def test_example_config_loads():
    code, settings, err = check_config(EXAMPLE)
    assert code == 0, err
    assert settings["target_host"] == "ssrf-proxy.vke-system"
    assert settings["target_port"] == 8888
    assert settings["read_timeout"] == 300
    assert settings["max_concurrent_requests"] == 100
    assert settings["max_queue_size"] == 200


# ---- systemd ----------------------------------------------------------------------


def unit_settings(text):
    """Key=value lines of a unit file (repeated keys keep every value)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def test_systemd_unit_settings():
    s = unit_settings(read(os.path.join(DEPLOY, "sluice.service")))
    assert s["Type"] == ["simple"]
    assert s["ExecStart"] == ["/usr/local/bin/sluice --config /etc/sluice/config.json"]
    assert "/bin/kill -HUP $MAINPID" in s["ExecReload"]
    assert s["KillSignal"] == ["SIGTERM"]
    assert s["LimitNOFILE"] == ["65536"]
    assert s["Restart"] == ["on-failure"]
    assert s.get("DynamicUser") == ["yes"] or "User" in s, "the unit must not run as root"
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
    # SIGKILL must not cut the drain short at the default shutdown_timeout.
    assert float(s["TimeoutStopSec"][0]) > 30


def test_systemd_unit_verifies(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # ExecStart's /usr/local/bin/sluice need not exist here: verify a copy
    # that runs the built binary instead.
    text = read(os.path.join(DEPLOY, "sluice.service")).replace("/usr/local/bin/sluice", SLUICE)
    unit = tmp_path / "sluice.service"
    unit.write_text(text)
    env = os.environ.copy()
    args = ["systemd-analyze", "verify"]
    if shutil.which("man"):
        # Documentation=man:sluice(1) must resolve: to our man page.
        (tmp_path / "man" / "man1").mkdir(parents=True)
        shutil.copy(os.path.join(ROOT, "docs", "sluice.1"), tmp_path / "man" / "man1" / "sluice.1")
        env["MANPATH"] = str(tmp_path / "man")
    else:
        args.append("--man=no")
    r = subprocess.run(args + [str(unit)], capture_output=True, text=True, env=env, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "sluice.service:" not in out, out


# ---- man page ---------------------------------------------------------------------


def test_man_page_renders_without_warnings():
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    r = subprocess.run(["groff", "-ww", "-man", "-z", os.path.join(ROOT, "docs", "sluice.1")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_man_page_documents_every_option():
    """Every option of --help appears in sluice.1."""
    page = read(os.path.join(ROOT, "docs", "sluice.1")).replace("\\-", "-")
    helptext = subprocess.run([SLUICE, "--help"], capture_output=True, text=True, timeout=30).stdout
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", helptext))
    assert len(options) > 30
    missing = sorted(o for o in options if o not in page)
    assert not missing, "sluice.1 lacks %s" % missing


# ---- Kubernetes --------------------------------------------------------------------


def k8s_docs():
    yaml = pytest.importorskip("yaml", reason="python3-yaml is not installed")
    docs = {}
    for name in sorted(os.listdir(K8S)):
        if not name.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(K8S, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    docs.setdefault(doc["kind"], []).append((name, doc))
    return docs


def one(docs, kind):
    assert kind in docs, "no %s in deploy/kubernetes" % kind
    assert len(docs[kind]) == 1, "several %s" % kind
    return docs[kind][0][1]


def named(docs, kind, name):
    """The one manifest of this kind with metadata.name == name."""
    found = [doc for _, doc in docs.get(kind, []) if doc["metadata"]["name"] == name]
    assert len(found) == 1, "%d %s named %s in deploy/kubernetes" % (len(found), kind, name)
    return found[0]


def container_port(container, port):
    """A probe's or Service's port (a name or a number) as a number."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError("no container port named %r" % port)


def test_kubernetes_manifests(tmp_path):
    docs = k8s_docs()
    for kind in ("ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"):
        assert kind in docs, "no %s in deploy/kubernetes" % kind

    # The config the pods run is valid.
    cm = one(docs, "ConfigMap")
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(cm["data"]["config.json"])
    code, cfg, err = check_config(str(cfg_path))
    assert code == 0, err

    dep = named(docs, "Deployment", "sluice")
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    (c,) = spec["containers"]
    assert pod["metadata"]["labels"].items() >= dep["spec"]["selector"]["matchLabels"].items()

    # The config is mounted where the container reads it.
    assert "/etc/sluice/config.json" in c["args"]
    (vol,) = [v for v in spec["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[vol["name"]] == "/etc/sluice"

    # Readiness on /proxy-health (503 while draining: the pod leaves the
    # Service), liveness on /proxy-metrics (200 until exit: a drain is not
    # cut short), both on the port that serves them: the admin port, which
    # keeps answering through the drain.
    admin = cfg["admin_port"]
    assert admin, "the probes need the admin port: the main port closes at SIGTERM"
    for probe, path in (("readinessProbe", "/proxy-health"), ("livenessProbe", "/proxy-metrics")):
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert container_port(c, get["port"]) == admin, probe

    # Prometheus scrapes the admin port.
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/path"] == "/proxy-metrics/prometheus"
    assert int(ann["prometheus.io/port"]) == admin

    # Kubernetes waits longer than sluice drains (preStop sleep included).
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
    assert spec["terminationGracePeriodSeconds"] > cfg["shutdown_timeout"] + sleep

    # Non-root, resources set, one worker per CPU of the limit at most.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    limits = c["resources"]["limits"]
    cpu = str(limits["cpu"])
    cpus = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    assert cfg["workers"] <= max(1, cpus)
    assert "memory" in limits and "cpu" in c["resources"]["requests"]

    # The Service sends clients to the proxy port.
    svc = named(docs, "Service", "sluice")
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (sp,) = svc["spec"]["ports"]
    assert container_port(c, sp["targetPort"]) == cfg["listen_port"]

    # The HPA scales this Deployment, and its maximum respects the upstream:
    # the pods share one limit through Redis, the upstream's capacity, which
    # examples/proxy_config.json gives as its max_concurrent_requests (without
    # redis_url, maxReplicas x per-pod limit would have to stay below it).
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", dep["metadata"]["name"])
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    _, example, _ = check_config(EXAMPLE)
    if cfg["redis_url"]:
        assert cfg["max_concurrent_requests"] <= example["max_concurrent_requests"]
    else:
        assert hpa["spec"]["maxReplicas"] * cfg["max_concurrent_requests"] <= example["max_concurrent_requests"]
    assert hpa["spec"]["minReplicas"] <= dep["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]

    # The Redis the config names is the one the kit ships: its Service, on
    # its port, in front of its Deployment.
    if cfg["redis_url"]:
        m = re.match(r"redis://(?:[^@]*@)?([^:/]+)(?::(\d+))?", cfg["redis_url"])
        host, port = m.group(1), int(m.group(2) or 6379)
        rsvc = named(docs, "Service", host)
        rdep = named(docs, "Deployment", host)
        assert rsvc["spec"]["selector"].items() <= rdep["spec"]["template"]["metadata"]["labels"].items()
        assert any(p["port"] == port for p in rsvc["spec"]["ports"]), rsvc["spec"]["ports"]


def test_kustomization_lists_every_manifest():
    docs = k8s_docs()
    kust = one(docs, "Kustomization")
    files = {name for kind, items in docs.items() if kind != "Kustomization" for name, _ in items}
    assert set(kust["resources"]) == files


def test_kubectl_kustomize_renders():
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    r = subprocess.run(["kubectl", "kustomize", K8S], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    kinds = re.findall(r"^kind: (\w+)$", r.stdout, re.M)
    assert {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"} <= set(kinds)


# ---- Docker --------------------------------------------------------------------------


def dockerfile_lines():
    """Instructions of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", read(os.path.join(DEPLOY, "Dockerfile")))
    return [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]


def test_dockerfile_shape():
    lines = dockerfile_lines()
    froms = [l for l in lines if l.startswith("FROM ")]
    assert len(froms) == 2 and all("debian:bookworm" in f for f in froms), froms
    runtime = lines[lines.index(froms[1]):]
    installs = " ".join(l for l in runtime if l.startswith("RUN ") and "apt-get install" in l)
    assert "libuv1" in installs and "libjansson4" in installs
    assert "-dev" not in installs, "the runtime stage installs build dependencies"
    (user,) = [l for l in runtime if l.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in ("root", "0")
    assert "EXPOSE 8080" in runtime
    assert any(l.startswith("COPY --from=") and "/usr/local/bin/sluice" in l for l in runtime)


def test_runtime_stage_installs_every_library_sluice_links():
    """Each shared library build/sluice needs comes from a package the
    runtime stage installs (libc's own family is in the base image)."""
    lines = dockerfile_lines()
    froms = [l for l in lines if l.startswith("FROM ")]
    runtime = lines[lines.index(froms[1]):]
    installs = " ".join(l for l in runtime if l.startswith("RUN ") and "apt-get install" in l).split()
    out = subprocess.run(["ldd", os.path.join(BUILD, "sluice")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    # What sluice itself names (DT_NEEDED); what those pull in comes with their
    # packages (a sanitizer runtime's libstdc++, say, is not ours to install).
    dyn = subprocess.run(["readelf", "-d", os.path.join(BUILD, "sluice")], capture_output=True, text=True, timeout=30)
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn.stdout))
    assert "libuv.so.1" in needed, dyn.stdout
    base = ("libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "ld-linux", "linux-vdso", "libgcc_s")
    for line in out.stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if not m or m.group(1) not in needed or m.group(1).startswith(base):
            continue
        if m.group(1).startswith(("libasan", "libubsan", "libtsan")):
            continue  # a sanitizer build
        pkg = subprocess.run(["dpkg", "-S", os.path.realpath(m.group(2))], capture_output=True, text=True)
        if pkg.returncode != 0:
            pkg = subprocess.run(["dpkg", "-S", m.group(2)], capture_output=True, text=True)
        name = pkg.stdout.split(":")[0]
        assert name in installs, "%s (package %s) is not installed in the runtime stage" % (m.group(1), name)


def copied_sources():
    """What the Dockerfile COPYs from the build context."""
    out = []
    for l in dockerfile_lines():
        if l.startswith("COPY ") and "--from=" not in l:
            out += l.split()[1:-1]
    return out


def test_dockerignore_keeps_what_the_build_copies():
    ignore = read(os.path.join(DEPLOY, "Dockerfile.dockerignore")).split()
    allowed = [p[1:].rstrip("/") for p in ignore if p.startswith("!")]
    assert "*" in ignore
    for src in copied_sources():
        assert src.rstrip("/") in allowed, "%s is copied but excluded by Dockerfile.dockerignore" % src


def test_docker_build_stage_builds_from_what_it_copies(tmp_path):
    """Docker cannot run here: replay the build stage's COPY and make in a
    bare directory, so a source the image build would lack fails here."""
    ctx = tmp_path / "src"
    ctx.mkdir()
    for src in copied_sources():
        if src.startswith("examples/"):
            continue  # runtime stage
        path = os.path.join(ROOT, src)
        if os.path.isdir(path):
            shutil.copytree(path, ctx / src.rstrip("/"))
        else:
            shutil.copy(path, ctx / os.path.basename(src))
    (make_line,) = [l for l in dockerfile_lines() if l.startswith("RUN make")]
    cmd = make_line[len("RUN "):].replace('"$(nproc)"', "2")
    r = subprocess.run(cmd, shell=True, cwd=ctx, capture_output=True, text=True, env=make_env(), timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = subprocess.run([str(ctx / "build" / "sluice"), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("sluice ")


def healthcheck_argv():
    (line,) = [l for l in dockerfile_lines() if l.startswith("HEALTHCHECK ")]
    m = re.search(r"\bCMD\s+(\[.*\])\s*$", line)
    assert m, "HEALTHCHECK must use the exec form: %s" % line
    return json.loads(m.group(1))


def test_docker_healthcheck_command(start_sluice):
    """The image's HEALTHCHECK passes against a running sluice — also one
    whose upstream is down, since /proxy-health answers 200 then too — and
    fails when nothing listens."""
    argv = healthcheck_argv()
    if shutil.which(argv[0]) is None:
        pytest.skip("%s is not installed" % argv[0])
    dead_upstream = free_port()
    sl = start_sluice(dead_upstream)
    status, _, _ = http_get(sl.url + "/")
    assert status == 502
    env = dict(os.environ, SLUICE_HEALTH_PORT=str(sl.port))
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    env["SLUICE_HEALTH_PORT"] = str(free_port())
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0


# ---- make install ------------------------------------------------------------------


def make_install_argv():
    makefile = read(os.path.join(ROOT, "Makefile"))
    if re.search(r"^\s*-?include\s+mk/install\.mk\b", makefile, re.M):
        return ["make", "-C", ROOT]
    return ["make", "-C", ROOT, "-f", "Makefile", "-f", "mk/install.mk"]


@pytest.mark.parametrize("prefix", [None, "/usr"])
def test_make_install_and_uninstall(tmp_path, prefix):
    dest = tmp_path / "dest"
    extra = ["BUILD=" + build_arg(), "DESTDIR=" + str(dest)]
    if prefix:
        extra.append("PREFIX=" + prefix)
    r = subprocess.run(make_install_argv() + ["install"] + extra, capture_output=True, text=True,
                       env=make_env(), timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    root = str(dest) + (prefix or "/usr/local")
    for prog in ("sluice", "sluice-upstream", "sluice-load"):
        path = os.path.join(root, "bin", prog)
        assert os.access(path, os.X_OK), path
    files = [os.path.join(root, "share/man/man1/sluice.1"),
             os.path.join(root, "share/doc/sluice/examples/proxy_config.json")]
    for path in files:
        assert os.path.isfile(path), path
    with open(files[1]) as f, open(EXAMPLE) as g:
        assert f.read() == g.read()
    assert not (dest / "etc").exists(), "make install must not touch /etc"
    v = subprocess.run([os.path.join(root, "bin", "sluice"), "--version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("sluice ")

    r = subprocess.run(make_install_argv() + ["uninstall"] + extra, capture_output=True, text=True,
                       env=make_env(), timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    left = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs]
    assert left == [], left
    assert not os.path.exists(os.path.join(root, "share/doc/sluice"))


# ---- scripts/start.sh ----------------------------------------------------------------


def test_start_script(upstream, procs, tmp_path):
    """start.sh builds if needed, exec's sluice with the recommended settings
    (env overrides applied, arguments passed on) and stops on SIGTERM."""
    port = free_port()
    env = dict(os.environ, SLUICE_BUILD=BUILD, TARGET_HOST="127.0.0.1", TARGET_PORT=str(upstream.port),
               LISTEN_HOST="127.0.0.1", LISTEN_PORT=str(port), MAX_QUEUE="7")
    p = Proc(["bash", os.path.join(ROOT, "scripts", "start.sh"), "--workers", "1"], port, "start.sh",
             tmp_path, env=env, wait=False)
    procs.append(p)
    wait_listening(port, p.proc, timeout=300)  # a build may come first

    # exec: the script's process is sluice itself, with these flags.
    with open("/proc/%d/cmdline" % p.pid, "rb") as f:
        argv = f.read().split(b"\0")[:-1]
    assert os.path.basename(argv[0]) == b"sluice"
    flags = dict(zip(argv[1::2], argv[2::2]))
    assert flags[b"--read-timeout"] == b"300"
    assert flags[b"--max-concurrent-requests"] == b"100"
    assert flags[b"--max-queue-size"] == b"7"
    assert flags[b"--target-port"] == str(upstream.port).encode()
    assert flags[b"--workers"] == b"1"

    status, _, body = http_get(p.url + "/?size=12")
    assert status == 200 and len(body) == 12
    status, _, body = http_get(p.url + "/proxy-health")
    assert status == 200 and json.loads(body)["status"] == "healthy"
    assert p.stop() == 0  # SIGTERM: drains and exits 0


# ---- logrotate ------------------------------------------------------------------------


def test_logrotate_rule_rotates_and_sluice_reopens(upstream, start_sluice, tmp_path):
    """deploy/logrotate/sluice, with the log path and the signal's target
    pointed at this test's sluice: logrotate renames the file, the postrotate
    SIGUSR1 makes sluice write to a new file, no line is lost."""
    if shutil.which("logrotate") is None:
        pytest.skip("logrotate is not installed (.ci/run installs it)")
    from test_observability import get, logged_targets
    from test_forwarding import wait_until

    path = str(tmp_path / "access.log")
    sl = start_sluice(upstream.port, access_log=path, workers=1)
    rule = read(os.path.join(DEPLOY, "logrotate", "sluice"))
    signal_line = "systemctl kill --signal=USR1 sluice.service"
    assert "/var/log/sluice/access.log {" in rule and signal_line in rule, rule
    conf = tmp_path / "logrotate.conf"
    conf.write_text(rule.replace("/var/log/sluice/access.log", path)
                    .replace(signal_line, "kill -USR1 %d" % sl.pid))

    first = ["/first-%d" % i for i in range(3)]
    for t in first:
        assert get(sl.port, t).status == 200
    assert wait_until(lambda: logged_targets(path) == first, 3), read(path)
    r = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert logged_targets(path + ".1") == first  # delaycompress: the newest rotation stays plain
    assert wait_until(lambda: os.path.exists(path), 5), "sluice did not reopen %s" % path
    second = ["/second-%d" % i for i in range(3)]
    for t in second:
        assert get(sl.port, t).status == 200
    assert wait_until(lambda: logged_targets(path) == second, 3), read(path)
    assert logged_targets(path + ".1") == first
    assert sl.stop() == 0
