"""The man pages against what they document, so the two cannot drift apart:
peernet(1) against the program's usage and each command's --help, and the
options it documents against what the program accepts; peernet(3) against
include/peernet.h."""
import glob
import os
import re
import subprocess

from conftest import REPO, FAST_BIN
from pnheader import header_extern_names, header_error_codes

MAN1 = os.path.join(REPO, "docs", "man", "peernet.1.scd")
MAN3 = os.path.join(REPO, "docs", "man", "peernet.3.scd")
OPTION = r"(?<![\w-])(--?[A-Za-z][A-Za-z0-9-]*)"


def read(path):
    with open(path) as f:
        return f.read()


def sections(text):
    """{heading: body} for every '# ' and '## ' heading of an scdoc page."""
    out = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^#{1,2} (.+)$", line)
        if m:
            current = m.group(1).strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def documented_options(body):
    """Options an scdoc section defines: its unindented lines that start with *-."""
    opts = set()
    for line in body.splitlines():
        if line.startswith("*-"):
            opts.update(re.findall(r"\*(--?[A-Za-z][A-Za-z0-9-]*)\*", line))
    return opts


def man_commands():
    """{'serve': options, 'get --server': options, ...}: each '## peernet X'
    section with the options of the 'Options common to ...' sections naming X."""
    secs = sections(read(MAN1))
    cmds = {h[len("peernet "):]: documented_options(b) for h, b in secs.items() if h.startswith("peernet ")}
    for heading, body in secs.items():
        m = re.match(r"^Options common to (.+)$", heading)
        if not m:
            continue
        names = re.split(r", | and ", m.group(1))
        for name in names:
            assert name in cmds, "%r names %r, which has no '## peernet %s' section" % (heading, name, name)
            cmds[name] |= documented_options(body)
    return cmds


def peernet(*args, env=None):
    e = dict(os.environ)
    e.pop("PEERNET_SERVER", None)
    e.update(env or {})
    return subprocess.run([FAST_BIN] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30, env=e)


# How to reach each man section's command; a section named "get --server"
# is `get` with a --server, which the program tells apart from the node's get.
def base_argv(section):
    if section == "get --server":
        return ["get", "--server", "127.0.0.1:1"]
    return [section]


def help_options(section):
    p = peernet(*(base_argv(section) + ["--help"]))
    assert p.returncode == 0, (section, p.stderr)
    text = p.stdout.decode()
    assert text.startswith("usage: peernet " + section.split()[0]), text[:200]
    opts = set()
    for line in text.splitlines():
        # Usage lines and option lines; not the prose, which may name other commands' options.
        if re.match(r"^(usage:|\s+peernet |\s+\[|\s+-)", line):
            opts.update(re.findall(OPTION, line))
    return opts


def usage_commands():
    p = peernet("--help")
    assert p.returncode == 0
    return set(re.findall(r"^  ([a-z]+)\s{2,}", p.stdout.decode(), re.M))


def test_every_command_of_the_usage_has_a_man_section():
    cmds = man_commands()
    usage = usage_commands()
    assert {"serve", "put", "get", "ls", "node", "directory", "demo"} <= usage, usage  # the parser works
    assert usage == {c.split()[0] for c in cmds}, (sorted(usage), sorted(cmds))
    assert "get --server" in cmds and "get" in cmds


def test_every_option_of_each_help_is_in_the_man_page():
    missing = {}
    for section, documented in man_commands().items():
        opts = help_options(section)
        if opts - documented:
            missing[section] = sorted(opts - documented)
    assert not missing, "options in --help but not in docs/man/peernet.1.scd: %s" % missing


def test_every_option_of_the_man_page_is_accepted():
    """Each documented option, followed by --help: the program must not call it
    unknown. (A value of x for a long option: the parser then stores it, rejects
    it as a bad value, or says the option takes none; all mean it is known.)"""
    unknown = {}
    for section, documented in man_commands().items():
        assert documented, section
        for opt in sorted(documented):
            probe = [opt + "=x"] if opt.startswith("--") else [opt, "x"] if opt in ("-o",) else [opt]
            p = peernet(*(base_argv(section) + probe + ["--help"]))
            err = p.stderr.decode()
            known = (p.returncode == 0 and p.stdout.startswith(b"usage: ")) or "doesn't allow an argument" in err \
                or ("bad %s " % opt) in err
            if not known or "unrecognized option" in err or "invalid option" in err:
                unknown.setdefault(section, []).append((opt, p.returncode, err.strip()[:200]))
    assert not unknown, "documented but not accepted: %s" % unknown


def test_global_options():
    secs = sections(read(MAN1))
    documented = documented_options(secs["GLOBAL OPTIONS"])
    assert documented == {"-h", "--help", "-V", "--version"}, documented
    for opt in ("-V", "--version"):
        p = peernet(opt)
        assert p.returncode == 0 and re.match(rb"^peernet \d+\.\d+\.\d+ \(protocol \d+\)\n$", p.stdout), p
    for opt in ("-h", "--help"):
        p = peernet(opt)
        assert p.returncode == 0 and p.stdout.startswith(b"usage: peernet COMMAND"), p
    assert peernet("--no-such-option").returncode == 2


def test_environment_variables_the_code_reads_are_documented():
    names = set()
    for path in glob.glob(os.path.join(REPO, "src", "**", "*.c"), recursive=True):
        names.update(re.findall(r'getenv\("([A-Z_][A-Z0-9_]*)"\)', read(path)))
    assert {"PEERNET_LOG", "PEERNET_SERVER"} <= names, names  # the scan works
    env = sections(read(MAN1))["ENVIRONMENT"]
    documented = set()
    for line in env.splitlines():
        if line.startswith("*"):
            documented.update(re.findall(r"\*([A-Z_][A-Z0-9_]*)\*", line))
    assert not names - documented, "read by the code, not in ENVIRONMENT: %s" % sorted(names - documented)


def test_man3_documents_every_exported_function_and_error_code():
    text = read(MAN3)
    functions = header_extern_names()
    codes = header_error_codes()
    assert "pn_strerror" in functions and "PN_EBADID" in codes  # the header parser works
    missing = [f for f in functions if not re.search(r"\*%s\*\(\)" % re.escape(f), text)]
    assert not missing, "PN_EXTERN in peernet.h, not described in docs/man/peernet.3.scd: %s" % missing
    missing = [c for c in codes if not re.search(r"^\|\s+%s\b" % re.escape(c), text, re.M)]
    assert not missing, "error codes of peernet.h missing from the ERRORS table: %s" % missing
