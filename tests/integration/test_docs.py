"""The documentation against the repository and the running programs
(issue 13):

- every relative link in every Markdown file resolves to a file of the
  repository, and every #anchor to a heading of its target; no link leaves
  the repository; paths and guide sections that the man page and the deploy
  files name exist;
- every long option of each program's --help is in docs/reference.md (and,
  for sluice, in docs/sluice.1 and in README.md's options table);
- every config key sluice accepts is in docs/reference.md, every key the
  reference's option tables name is accepted, and the defaults they give are
  the ones --check-config prints;
- the /proxy-metrics fields the reference lists are the ones a live sluice
  serves, and the sluice_* Prometheus names in the reference and the guide
  are the ones a live sluice serves (with the type and label values the
  reference gives), both ways.

Each failure message lists exactly what is missing or wrong.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import BUILD, ROOT, free_port, http_get

DOCS = os.path.join(ROOT, "docs")
REFERENCE = os.path.join(DOCS, "reference.md")
GUIDE = os.path.join(DOCS, "guide.md")
MAN = os.path.join(DOCS, "sluice.1")
README = os.path.join(ROOT, "README.md")
SKIP_DIRS = {".git", "node_modules", "__pycache__", ".pytest_cache"}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def rel(path):
    return os.path.relpath(path, ROOT)


def run(*argv):
    return subprocess.run([os.path.join(BUILD, argv[0])] + list(argv[1:]), capture_output=True, text=True,
                          timeout=30)


# ---- Markdown structure ------------------------------------------------------------


def markdown_files():
    """Every *.md of the repository, build directories left out."""
    found = []
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith(("build", ".")))
        found += [os.path.join(d, f) for f in sorted(files) if f.endswith(".md")]
    return found


def unfenced_lines(text):
    """(line number, line) outside fenced code blocks."""
    fence = None
    for n, line in enumerate(text.split("\n"), 1):
        m = re.match(r"\s*(```+|~~~+)", line)
        if m:
            if fence is None:
                fence = m.group(1)[0] * 3
            elif m.group(1).startswith(fence):
                fence = None
            continue
        if fence is None:
            yield n, line


def prose_lines(text):
    """(line number, line) outside fenced code blocks, inline code removed."""
    for n, line in unfenced_lines(text):
        yield n, re.sub(r"(`+)(?:(?!\1).)+?\1", "", line)


def github_slug(heading):
    """The anchor GitHub gives a heading: markup dropped, lower case, every
    character but letters, digits, spaces, '-' and '_' removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def headings(path):
    """Heading texts of a Markdown file, in order (code blocks skipped)."""
    out = []
    for _, line in unfenced_lines(read(path)):
        h = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if h:
            out.append(h.group(1))
    return out


def anchors(path):
    seen, result = {}, set()
    for h in headings(path):
        s = github_slug(h)
        n = seen.get(s, 0)
        seen[s] = n + 1
        result.add(s if n == 0 else "%s-%d" % (s, n))
    return result


LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
AUTOLINK = re.compile(r"<((?:https?|ftp|file|mailto):[^>\s]+)>")
HTML_LINK = re.compile(r"(?:href|src)\s*=\s*[\"']([^\"']+)[\"']")
BARE_URL = re.compile(r"(?<![\w/])(?:https?|ftp)://[^\s)>\]\"'`]+")
# Names that stand for a host in examples, never a site to visit.
EXAMPLE_HOSTS = re.compile(r"^(?:https?|ftp)://(?:localhost|127\.0\.0\.1|\[::1\]|sluice|example\.(?:org|com|net)|"
                           r"[\w.-]+\.example)(?:[:/]|$)")


def links(path):
    """(line number, target) of every link in a Markdown file, outside code."""
    for n, line in prose_lines(read(path)):
        found = []
        for rx in (LINK, REF_DEF, AUTOLINK, HTML_LINK):
            found += [m.group(1) for m in rx.finditer(line)]
        found += [m.group(0) for m in BARE_URL.finditer(line)
                  if m.group(0) not in found and not EXAMPLE_HOSTS.match(m.group(0))]
        for target in found:
            yield n, target


def check_link(md, target):
    """None if the link is fine, else what is wrong with it."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
        return "leaves the repository (a URL)"
    path, _, anchor = target.partition("#")
    if path.startswith("/"):
        return "is an absolute filesystem path"
    dest = os.path.normpath(os.path.join(os.path.dirname(md), path)) if path else md
    if os.path.relpath(dest, ROOT).startswith(".."):
        return "points outside the repository (%s)" % os.path.relpath(dest, ROOT)
    if not os.path.exists(dest):
        return "has no target: %s does not exist" % rel(dest)
    if anchor:
        if not dest.endswith(".md"):
            return "has an anchor into a file that is not Markdown"
        if anchor not in anchors(dest):
            return "has no target: %s has no heading with the anchor #%s" % (rel(dest), anchor)
    return None


def test_markdown_links_resolve_inside_the_repository():
    files = markdown_files()
    assert REFERENCE in files and README in files and GUIDE in files
    problems, count = [], 0
    for md in files:
        for n, target in links(md):
            count += 1
            why = check_link(md, target)
            if why:
                problems.append("%s:%d: link %r %s" % (rel(md), n, target, why))
    assert count > 50, "only %d links found: is the link parser broken?" % count
    assert not problems, "broken or outside links:\n" + "\n".join(problems)


def test_github_slug_rules():
    assert github_slug('Troubleshooting "Read timed out (read timeout=300)"') == \
        "troubleshooting-read-timed-out-read-timeout300"
    assert github_slug("In front of Squid (HTTP_PROXY, HTTPS_PROXY)") == "in-front-of-squid-http_proxy-https_proxy"
    assert github_slug("GET /proxy-metrics/prometheus") == "get-proxy-metricsprometheus"
    assert github_slug("`sluice-load` options") == "sluice-load-options"


def comment_text(path):
    """A file's text with comment markers and line breaks flattened, so a
    reference split over two comment lines reads as one."""
    lines = [re.sub(r"^\s*(?:#+|//|\.\\\")\s?", "", line) for line in read(path).split("\n")]
    return " ".join(lines).replace("\\-", "-")


def repo_files(*dirs):
    out = []
    for d in dirs:
        for base, _, files in os.walk(os.path.join(ROOT, d)):
            out += [os.path.join(base, f) for f in files]
    return sorted(out)


def test_paths_and_guide_sections_named_outside_markdown_exist():
    """The man page and the deploy kit name repository files and guide
    sections in plain text (`docs/guide.md, "Hot reload"`): each must exist."""
    sources = [MAN] + repo_files("deploy", "examples", "scripts")
    guide_headings = headings(GUIDE)
    problems = []
    for src in sources:
        text = comment_text(src)
        for m in re.finditer(r"(?<![\w/.-])((?:docs|deploy|examples|scripts)/[\w./-]*)", text):
            path = m.group(1).rstrip(".,;:")
            if not os.path.exists(os.path.join(ROOT, path)):
                problems.append("%s names %s, which does not exist" % (rel(src), path))
        for m in re.finditer(r"docs/guide\.md,?\s+\"([^\"]+)\"", text):
            section = m.group(1)
            if not any(h.startswith(section) for h in guide_headings):
                problems.append("%s refers to the guide's section %r, which docs/guide.md does not have"
                                % (rel(src), section))
    assert not problems, "\n".join(problems)


# ---- options and config keys ----------------------------------------------------------


def long_options(program):
    r = run(program, "--help")
    assert r.returncode == 0, r.stderr
    found = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", r.stdout))
    assert found, "no options in %s --help" % program
    return found


def md_has_option(text, name):
    return re.search(r"(?<![\w-])--%s(?![\w-])" % re.escape(name), text) is not None


def man_has_option(text, name):
    escaped = "\\-\\-" + name.replace("-", "\\-")
    return re.search(re.escape(escaped) + r"(?![a-z0-9]|\\-)", text) is not None


def section(text, title_rx, level=2):
    """The lines of a Markdown section whose heading matches title_rx, up to
    the next heading of the same or a higher level."""
    out, inside = [], False
    for line in text.split("\n"):
        h = re.match(r"(#{1,6})\s+(.*?)\s*$", line)
        if h and inside and len(h.group(1)) <= level:
            break
        if h and len(h.group(1)) == level and re.fullmatch(title_rx, h.group(2)):
            inside = True
            continue
        if inside:
            out.append(line)
    return "\n".join(out)


def table_rows(text):
    """Cells of every table row (not the separator) in text."""
    rows = []
    for line in text.split("\n"):
        if not line.startswith("|") or re.match(r"^\|[\s|:-]+\|\s*$", line):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows.append(cells)
    return rows


def test_every_sluice_option_is_documented():
    options = long_options("sluice")
    assert {"target-host", "max-concurrent", "check-config", "help", "version"} <= options
    reference, man = read(REFERENCE), read(MAN)
    readme_table = "\n".join("|".join(r) for r in table_rows(section(read(README), "Options")))
    assert readme_table, "README.md has no table under ## Options"
    missing = {
        "docs/reference.md": sorted(o for o in options if not md_has_option(reference, o)),
        "docs/sluice.1": sorted(o for o in options if not man_has_option(man, o)),
        "README.md (options table)": sorted(o for o in options if not md_has_option(readme_table, o)),
    }
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, "options of sluice --help not documented:\n" + "\n".join(
        "%s lacks %s" % (k, ", ".join("--" + o for o in v)) for k, v in missing.items())


def test_every_tool_option_is_in_the_reference():
    reference = read(REFERENCE)
    problems = []
    for program, expect in (("sluice-load", {"url", "rate", "json", "min-success-rate"}),
                            ("sluice-upstream", {"port", "workers", "idle-timeout"})):
        options = long_options(program)
        assert expect <= options, "%s --help changed shape: %s" % (program, sorted(options))
        problems += ["docs/reference.md lacks %s --%s" % (program, o) for o in sorted(options)
                     if not md_has_option(reference, o)]
    assert not problems, "\n".join(problems)


def effective_settings():
    r = run("sluice", "--target-host", "upstream.invalid", "--check-config")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout[r.stdout.index("{"):])


def accepted_keys():
    """Every key the config file accepts: the settings --check-config prints
    (but `config`, which is command-line only) and the aliases --help names."""
    keys = set(effective_settings()) - {"config"}
    helptext = run("sluice", "--help").stdout
    keys |= {a.replace("-", "_") for a in re.findall(r"alias --([a-z][a-z0-9-]*)", helptext)}
    return keys


def reference_option_rows():
    """(flag cell, key cell, default cell) of the reference's option tables."""
    opts = section(read(REFERENCE), "Options and config keys")
    rows = []
    for cells in table_rows(opts):
        if len(cells) >= 4 and cells[0].startswith("`-"):
            rows.append((cells[0], cells[1], cells[3]))
    return rows


def test_every_config_key_is_documented():
    keys = accepted_keys()
    assert {"max_concurrent_requests", "max_concurrent", "retry_backoff", "client_abort"} <= keys
    reference = read(REFERENCE)
    missing = sorted(k for k in keys if "`%s`" % k not in reference)
    documented = set()
    for _, key_cell, _ in reference_option_rows():
        documented |= set(re.findall(r"`([a-z][a-z0-9_]*)`", key_cell))
    not_in_tables = sorted(keys - documented)
    unknown = sorted(documented - keys)
    assert not (missing or not_in_tables or unknown), "\n".join(filter(None, [
        missing and "docs/reference.md lacks the config keys %s" % missing,
        not_in_tables and "docs/reference.md's option tables lack the config keys %s" % not_in_tables,
        unknown and "docs/reference.md's option tables name keys sluice refuses: %s" % unknown,
    ]))


def test_reference_defaults_are_the_built_in_ones():
    """A default written as a `value` (or "none", or "off") in the option
    tables is what --check-config prints for that key."""
    settings = effective_settings()
    wrong, checked = [], 0
    for flag, key_cell, default in reference_option_rows():
        keys = re.findall(r"`([a-z][a-z0-9_]*)`", key_cell)
        if not keys or keys[0] not in settings:
            continue
        key, actual = keys[0], settings[keys[0]]
        values = re.findall(r"`([^`]*)`", default)
        if default.startswith("none"):
            expected = None
        elif default.startswith("off"):
            expected = False
        elif default.startswith("`") and values:
            expected = values[0]
        else:
            continue  # required, or computed (workers)
        checked += 1
        if isinstance(actual, bool) or actual is None or isinstance(expected, bool) or expected is None:
            same = actual == expected or (expected == "false" and actual is False)
        elif isinstance(actual, (int, float)):
            try:
                same = float(expected) == float(actual)
            except ValueError:
                same = False
        else:
            same = expected == actual
        if not same:
            wrong.append("%s: docs/reference.md says %r, --check-config prints %r" % (key, default, actual))
    assert checked > 30, "only %d defaults could be read from docs/reference.md" % checked
    assert not wrong, "\n".join(wrong)


# ---- metrics -----------------------------------------------------------------------


def expand(token):
    """`a.{b,c}` -> [a.b, a.c]; anything else as is."""
    m = re.fullmatch(r"(.*)\{([^}]*)\}(.*)", token)
    if not m:
        return [token]
    return [x for part in m.group(2).split(",") for x in expand(m.group(1) + part.strip() + m.group(3))]


def documented_json_fields():
    text = section(read(REFERENCE), r"GET /proxy-metrics", level=3)
    assert text, "docs/reference.md has no '### GET /proxy-metrics' section"
    fields = set()
    for cells in table_rows(text):
        for token in re.findall(r"`([^`]+)`", cells[0]):
            if re.fullmatch(r"[a-z_][a-z0-9_.{},]*", token):
                fields.update(expand(token))
    fields.discard("field")
    return fields


def leaves(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, prefix + k + ".")
    else:
        yield prefix[:-1]


def lookup(obj, path):
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return False
        obj = obj[part]
    return True


@pytest.fixture
def redis_url():
    """A redis-server of our own, so the cluster's fields are served too."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not listen"
                time.sleep(0.05)
        yield "redis://127.0.0.1:%d" % port
    finally:
        proc.terminate()
        proc.wait(10)


def busy_sluice(start_sluice, upstream, tmp_path, redis_url):
    """A sluice in a cluster (of one) that has forwarded, failed and refused
    something."""
    s = start_sluice(upstream.port, access_log=str(tmp_path / "access.log"), max_retries=0, redis_url=redis_url)
    assert http_get(s.url + "/?size=10")[0] == 200
    assert http_get(s.url + "/?status=500")[0] == 500
    assert http_get(s.url + "/?fail=reset")[0] == 502
    return s


def test_metrics_json_fields_match_the_reference(start_sluice, upstream, tmp_path, redis_url):
    s = busy_sluice(start_sluice, upstream, tmp_path, redis_url)
    status, _, body = http_get(s.url + "/proxy-metrics")
    assert status == 200
    live = json.loads(body)
    documented = documented_json_fields()
    assert len(documented) > 60, "only %d fields read from docs/reference.md" % len(documented)
    not_served = sorted(f for f in documented if not lookup(live, f))
    undocumented = sorted(p for p in leaves(live) if p not in documented and not p.startswith("config."))
    assert not (not_served or undocumented), "\n".join(filter(None, [
        not_served and "docs/reference.md lists /proxy-metrics fields sluice does not serve: %s" % not_served,
        undocumented and "/proxy-metrics serves fields docs/reference.md does not list: %s" % undocumented,
    ]))
    # config.<key>: every key is a setting the option tables document
    config_keys = sorted(k for k in live["config"] if k != "target" and "`%s`" % k not in read(REFERENCE))
    assert not config_keys, "docs/reference.md lacks the config keys %s" % config_keys


def prometheus_families(text):
    """{family: type} from the # TYPE lines, and {family: {label: {values}}}."""
    types, labels = {}, {}
    for line in text.split("\n"):
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", line)
        if m:
            name = m.group(1)
            family = next((f for f in (name, re.sub(r"_(bucket|sum|count)$", "", name)) if f in types), name)
            for k, v in re.findall(r'(\w+)="([^"]*)"', m.group(2)):
                if k != "le":
                    labels.setdefault(family, {}).setdefault(k, set()).add(v)
    return types, labels


def family_of(name, types):
    """A sample name as written in a document, to its family (or None)."""
    if name in types:
        return name
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    if base != name and types.get(base) in ("histogram", "summary"):
        return base
    return None


def test_prometheus_names_match_the_reference(start_sluice, upstream, tmp_path, redis_url):
    s = busy_sluice(start_sluice, upstream, tmp_path, redis_url)
    status, headers, body = http_get(s.url + "/proxy-metrics/prometheus")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    types, labels = prometheus_families(body.decode())
    assert len(types) > 20, body[:500]
    problems = []
    for doc in (REFERENCE, GUIDE):
        for name in sorted(set(re.findall(r"(?<![\w-])((?:sluice|process)_[a-z0-9_]+)", read(doc)))):
            if family_of(name, types) is None:
                problems.append("%s names %s, which /proxy-metrics/prometheus does not serve" % (rel(doc), name))
    rows = {}
    for cells in table_rows(section(read(REFERENCE), r"GET /proxy-metrics/prometheus", level=3)):
        names = re.findall(r"`((?:sluice|process)_[a-z0-9_]+)`", cells[0])
        for n in names:
            rows[n] = cells
    for family, kind in sorted(types.items()):
        if family not in rows:
            problems.append("/proxy-metrics/prometheus serves %s (%s), which docs/reference.md's table lacks"
                            % (family, kind))
            continue
        cells = rows[family]
        said = cells[1] if len(cells) > 1 else ""
        if said != kind:
            problems.append("%s is a %s; docs/reference.md says %r" % (family, kind, said))
        for label, values in sorted(labels.get(family, {}).items()):
            label_cell = cells[2] if len(cells) > 2 else ""
            if "`%s`" % label not in label_cell:
                problems.append("%s has the label %s, which docs/reference.md does not give" % (family, label))
            for v in sorted(values):
                if "`%s`" % v not in label_cell:
                    problems.append("%s{%s=%r} is not in docs/reference.md" % (family, label, v))
    assert not problems, "\n".join(problems)
