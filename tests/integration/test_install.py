"""make install / make uninstall, into a temporary DESTDIR: the files and their
modes, the shared library's SONAME and exports, a program built with
pkg-config against the installed library (shared and static), the man pages,
and the systemd units of contrib/ run against the installed program.

The build is the checkout's build/ (make install builds what is missing); only
DESTDIR is temporary. Every process started is stopped by its PID.
"""
import json
import os
import re
import shlex
import signal
import socket
import subprocess

import pytest

from conftest import REPO, poll, stop_pid, cid_str
from pnheader import header_text, header_version, header_extern_names

PREFIX = "/usr/local"
MAKE_TIMEOUT = 600
CHUNK = 256 * 1024


def make_env():
    """A make of its own, also when make integration runs this test: not the
    outer make's jobserver or command-line variables."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def make(*args, check=True):
    p = subprocess.run(["make", "-C", REPO, "-j2"] + list(args), stdin=subprocess.DEVNULL, env=make_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=MAKE_TIMEOUT)
    if check:
        assert p.returncode == 0, "make %s -> %d:\n%s" % (" ".join(args), p.returncode,
                                                         p.stdout.decode(errors="replace")[-4000:])
    return p


def tree(root):
    """Every non-directory under root (files and symlinks), relative."""
    out = set()
    for base, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            out.add(os.path.relpath(os.path.join(base, name), root))
    return out


def expected_files(prefix="usr/local", libdir=None):
    v = header_version()
    lib = libdir or prefix + "/lib"
    return {
        prefix + "/bin/peernet",
        prefix + "/include/peernet.h",
        lib + "/libpeernet.a",
        lib + "/libpeernet.so.%s" % v,
        lib + "/libpeernet.so.%s" % v.split(".")[0],
        lib + "/libpeernet.so",
        lib + "/pkgconfig/peernet.pc",
        prefix + "/share/man/man1/peernet.1",
        prefix + "/share/man/man3/peernet.3",
    }


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("destdir"))
    make("install", "DESTDIR=" + d, "PREFIX=" + PREFIX)
    return d


def p(dest, *parts):
    return os.path.join(dest, PREFIX.lstrip("/"), *parts)


def test_install_puts_each_file_with_its_mode(dest):
    assert tree(dest) == expected_files()
    modes = {"bin/peernet": 0o755, "include/peernet.h": 0o644, "lib/libpeernet.a": 0o644,
             "lib/libpeernet.so.%s" % header_version(): 0o755, "lib/pkgconfig/peernet.pc": 0o644,
             "share/man/man1/peernet.1": 0o644, "share/man/man3/peernet.3": 0o644}
    for rel, mode in modes.items():
        st = os.lstat(p(dest, rel))
        assert not os.path.islink(p(dest, rel)), rel
        assert st.st_mode & 0o7777 == mode, "%s has mode %o, not %o" % (rel, st.st_mode & 0o7777, mode)
    with open(p(dest, "include", "peernet.h")) as f:
        assert f.read() == header_text()
    out = subprocess.run([p(dest, "bin", "peernet"), "--version"], stdout=subprocess.PIPE, check=True).stdout
    assert out.decode().startswith("peernet %s " % header_version())


def test_shared_library_soname_and_links(dest):
    v = header_version()
    major = v.split(".")[0]
    lib = p(dest, "lib")
    assert os.readlink(os.path.join(lib, "libpeernet.so")) == "libpeernet.so.%s" % major
    assert os.readlink(os.path.join(lib, "libpeernet.so.%s" % major)) == "libpeernet.so.%s" % v
    dyn = subprocess.run(["readelf", "-d", os.path.join(lib, "libpeernet.so.%s" % v)], stdout=subprocess.PIPE,
                         check=True).stdout.decode()
    sonames = re.findall(r"\(SONAME\)\s+Library soname: \[(.*)\]", dyn)
    assert sonames == ["libpeernet.so.%s" % major], dyn


def test_shared_library_exports_exactly_the_pn_extern_api(dest):
    declared = header_extern_names()
    # What the parser finds today; a sanity check on the parser, not a list to keep.
    assert {"pn_strerror", "pn_cid_parse", "pn_cid_format"} <= set(declared), declared
    out = subprocess.run(["nm", "-D", "--defined-only", p(dest, "lib", "libpeernet.so")], stdout=subprocess.PIPE,
                         check=True).stdout.decode()
    exported = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
    assert exported, out
    assert not {s for s in exported if not s.startswith("pn_")}, "exports without the pn_ prefix: %s" % sorted(
        s for s in exported if not s.startswith("pn_"))
    assert not set(declared) - exported, "declared PN_EXTERN but not exported: %s" % sorted(set(declared) - exported)
    assert not exported - set(declared), "exported but not PN_EXTERN in peernet.h: %s" % sorted(exported - set(declared))
    # The static library keeps the internal functions the program needs; the shared one hides them.
    out = subprocess.run(["nm", "--defined-only", p(dest, "lib", "libpeernet.a")], stdout=subprocess.PIPE,
                         check=True).stdout.decode()
    internal = {l.split()[-1] for l in out.splitlines() if re.match(r"^[0-9a-f]+ T pn_", l)} - set(declared)
    assert internal, "expected internal pn_ functions in libpeernet.a"


EXAMPLE = r"""
#include <stdio.h>
#include <string.h>
#include <peernet.h>

int main(int argc, char **argv)
{
	struct pn_cid cid;
	char back[PN_CID_STR_LEN + 1];
	if (argc != 2)
		return 2;
	int r = pn_cid_parse(argv[1], &cid);
	if (r != 0) {
		printf("error %d %s\n", r, pn_strerror(r));
		return 1;
	}
	pn_cid_format(&cid, back);
	printf("version %s\n", PN_VERSION_STRING);
	printf("id %s\n", back);
	printf("size %llu chunks %u last %u\n", (unsigned long long)cid.size, pn_cid_chunks(&cid),
	       pn_cid_chunk_len(&cid, pn_cid_chunks(&cid) - 1));
	printf("bad %d %s\n", pn_cid_parse("pn1", &cid), pn_strerror(PN_EBADID));
	return 0;
}
"""

SIZE = 3 * CHUNK + 12345
CID = cid_str(bytes(range(32)), SIZE)


def check_example_output(out):
    lines = out.decode().splitlines()
    assert lines == [
        "version %s" % header_version(),
        "id %s" % CID,
        "size %d chunks 4 last 12345" % SIZE,
        "bad -16 malformed content ID",
    ], lines


def pkg_config(dest, *args):
    env = dict(os.environ, PKG_CONFIG_PATH=p(dest, "lib", "pkgconfig"), PKG_CONFIG_SYSROOT_DIR=dest)
    env.pop("PKG_CONFIG_LIBDIR", None)
    r = subprocess.run(["pkg-config"] + list(args) + ["peernet"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr.decode()
    return shlex.split(r.stdout.decode())


def needed(path):
    dyn = subprocess.run(["readelf", "-d", path], stdout=subprocess.PIPE, check=True).stdout.decode()
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", dyn)


def test_pkg_config_metadata(dest):
    assert pkg_config(dest, "--modversion") == [header_version()]
    # The header's directory first; pkg-config adds what Requires.private's
    # packages ask for (with the sysroot prepended to their system paths).
    assert pkg_config(dest, "--cflags")[0] == "-I" + p(dest, "include")
    # The API is expressed in libuv's loop: Requires names libuv, so a program
    # gets -luv with -lpeernet.
    libs = pkg_config(dest, "--libs")
    assert libs[:2] == ["-L" + p(dest, "lib"), "-lpeernet"] and "-luv" in libs, libs
    with open(p(dest, "lib", "pkgconfig", "peernet.pc")) as f:
        pc = f.read()
    assert re.search(r"^prefix=%s$" % re.escape(PREFIX), pc, re.M), pc
    # Requires.private is the Makefile's PKGS_PC but libuv (in Requires): what the library itself links.
    mk = subprocess.run(["make", "-C", REPO, "-s", "--no-print-directory", "-f", "Makefile", "-f", "-",
                         "print-pkgs"], input=b"print-pkgs:\n\t@echo $(PKGS_PC)\n", stdout=subprocess.PIPE, env=make_env(),
                        check=True).stdout.decode().split()
    req = re.search(r"^Requires\.private:(.*)$", pc, re.M)
    assert req and req.group(1).split() == [m for m in mk if m != "libuv"], (pc, mk)
    assert re.search(r"^Requires: libuv$", pc, re.M), pc


def test_program_builds_with_pkg_config_against_the_shared_library(dest, tmp_path):
    src = tmp_path / "example.c"
    src.write_text(EXAMPLE)
    exe = str(tmp_path / "example")
    cmd = ["cc", "-std=c11", "-Wall", "-Werror", str(src), "-o", exe] + pkg_config(dest, "--cflags", "--libs")
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, "%s\n%s" % (" ".join(cmd), r.stdout.decode())
    assert "libpeernet.so.%s" % header_version().split(".")[0] in needed(exe)
    env = dict(os.environ, LD_LIBRARY_PATH=p(dest, "lib"))
    # The installed library, not another one on the system.
    ldd = subprocess.run(["ldd", exe], env=env, stdout=subprocess.PIPE, check=True).stdout.decode()
    assert re.search(r"libpeernet\.so\.\d+ => %s/" % re.escape(p(dest, "lib")), ldd), ldd
    run = subprocess.run([exe, CID.upper().replace("PN1", "pn1")], env=env, stdout=subprocess.PIPE, timeout=30)
    assert run.returncode == 0
    check_example_output(run.stdout)
    bad = subprocess.run([exe, CID[:-1]], env=env, stdout=subprocess.PIPE, timeout=30)
    assert bad.returncode == 1 and bad.stdout == b"error -16 malformed content ID\n"


def test_program_builds_with_pkg_config_static_against_the_archive(dest, tmp_path):
    src = tmp_path / "example.c"
    src.write_text(EXAMPLE)
    exe = str(tmp_path / "example-static")
    libs = pkg_config(dest, "--static", "--libs")
    assert "-lpeernet" in libs and {"-luv", "-lssl", "-lcrypto", "-lm"} <= set(libs), libs
    # The whole archive, so every object's references must be met by what
    # pkg-config --static adds (Requires.private, Libs.private), not only the
    # few objects this program calls into.
    i = libs.index("-lpeernet")
    libs[i:i + 1] = ["-Wl,--whole-archive", "-l:libpeernet.a", "-Wl,--no-whole-archive"]
    cmd = ["cc", "-std=c11", "-Wall", "-Werror", str(src), "-o", exe] + pkg_config(dest, "--cflags") + libs
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, "%s\n%s" % (" ".join(cmd), r.stdout.decode())
    assert not [n for n in needed(exe) if "peernet" in n], needed(exe)
    run = subprocess.run([exe, CID], stdout=subprocess.PIPE, timeout=30,
                         env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"})
    assert run.returncode == 0
    check_example_output(run.stdout)


def man(dest, *args):
    env = dict(os.environ, MANPATH=p(dest, "share", "man"), MANPAGER="cat", PAGER="cat", MANWIDTH="100",
               LANG="C.UTF-8")
    env.pop("MANOPT", None)
    r = subprocess.run(["man"] + list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, "man %s -> %d: %s" % (" ".join(args), r.returncode, r.stderr.decode())
    return re.sub(r".\x08", "", r.stdout.decode())


def test_man_pages_render_after_install(dest):
    page = man(dest, "peernet")
    assert re.search(r"^NAME\n\s+peernet - ", page, re.M), page[:500]
    for heading in ("peernet serve", "peernet node", "peernet directory", "ENVIRONMENT", "EXIT STATUS"):
        assert re.search(r"^\s+%s$|^%s$" % (heading, heading), page, re.M), heading
    assert "--handshake-timeout SECONDS" in page
    api = man(dest, "3", "peernet")
    assert "#include <peernet.h>" in api
    for name in header_extern_names():
        assert name + "(" in api, name
    assert not re.search(r"\\f[BIR]|\.(?:SH|TH|RS)\b", page + api), "unrendered roff in the page"


def test_uninstall_removes_what_install_put_for_any_prefix(tmp_path):
    d = str(tmp_path / "dest")
    opts = ["DESTDIR=" + d, "PREFIX=/opt/pn", "LIBDIR=/opt/pn/lib64"]
    make("install", *opts)
    assert tree(d) == expected_files("opt/pn", "opt/pn/lib64")
    with open(os.path.join(d, "opt/pn/lib64/pkgconfig/peernet.pc")) as f:
        pc = f.read()
    assert "prefix=/opt/pn\n" in pc and "libdir=${prefix}/lib64\n" in pc, pc
    keep = os.path.join(d, "opt/pn/lib64/libother.so")  # not ours: uninstall leaves it
    open(keep, "w").close()
    make("uninstall", *opts)
    assert tree(d) == {"opt/pn/lib64/libother.so"}
    # A second uninstall finds nothing to remove and still succeeds.
    make("uninstall", *opts)


# ---------------------------------------------------------------- systemd units

UNITS = ("peernet-directory.service", "peernet-serve.service", "peernet-node.service")


def read_unit(name):
    """The [Service] keys of a unit: {key: [values]} in order."""
    keys = {}
    section = None
    with open(os.path.join(REPO, "contrib", name)) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            k, _, v = line.partition("=")
            keys.setdefault((section, k.strip()), []).append(v.strip())
    return keys


def exec_start_argv(unit):
    """ExecStart split as systemd does for these lines, ${VAR} from Environment=."""
    env = {}
    for line in unit.get(("[Service]", "Environment"), []):
        for assignment in shlex.split(line):
            k, _, v = assignment.partition("=")
            env[k] = v
    starts = unit[("[Service]", "ExecStart")]
    assert len(starts) == 1, starts
    argv = []
    for word in shlex.split(starts[0]):
        def expand(m):
            assert m.group(1) in env, "ExecStart uses ${%s}, which no Environment= sets" % m.group(1)
            return env[m.group(1)]
        argv.append(re.sub(r"\$\{(\w+)\}", expand, word))
    assert not any("$" in a for a in argv), argv
    return argv


def test_units_point_at_the_installed_program(dest):
    for name in UNITS:
        unit = read_unit(name)
        argv = exec_start_argv(unit)
        assert argv[0] == PREFIX + "/bin/peernet", (name, argv[0])
        assert os.access(os.path.join(dest, argv[0].lstrip("/")), os.X_OK)
        assert argv[1] == name[len("peernet-"):-len(".service")], (name, argv[1])
        state = unit[("[Service]", "StateDirectory")]
        assert argv[argv.index("--data") + 1] == "/var/lib/" + state[0], (name, argv)
        for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("Restart", "on-failure"),
                           ("DynamicUser", "yes")):
            assert unit.get(("[Service]", key)) == [value], (name, key)


def test_units_pass_systemd_analyze_verify(dest, tmp_path):
    """systemd's own check: keys, ExecStart's program, the man page of Documentation=.
    The unit is verified as written, but with the program's path under DESTDIR."""
    for name in UNITS:
        with open(os.path.join(REPO, "contrib", name)) as f:
            text = f.read()
        installed = os.path.join(dest, PREFIX.lstrip("/"), "bin", "peernet")
        copy = tmp_path / name
        copy.write_text(text.replace("ExecStart=%s/bin/peernet " % PREFIX, "ExecStart=%s " % installed))
        assert copy.read_text() != text
        env = dict(os.environ, MANPATH=p(dest, "share", "man"))
        r = subprocess.run(["systemd-analyze", "verify", str(copy)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60, cwd=str(tmp_path))
        assert r.returncode == 0 and not r.stderr.strip(), "%s: %d\n%s%s" % (
            name, r.returncode, r.stdout.decode(), r.stderr.decode())


class UnitProcess:
    """The installed program run with a unit's ExecStart arguments, where
    only the values of --listen, --data and --directory are replaced."""

    def __init__(self, dest, workdir, name, values):
        argv = exec_start_argv(read_unit(name))
        argv[0] = os.path.join(dest, argv[0].lstrip("/"))
        for opt, value in values.items():
            assert opt in argv, (name, opt, argv)
            argv[argv.index(opt) + 1] = value
        self.name = name
        self.out_path = os.path.join(workdir, name + ".out")
        self.err_path = os.path.join(workdir, name + ".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def text(self, path):
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_port(self):
        def listening():
            assert self.proc.poll() is None, "%s exited %d: %s" % (self.name, self.proc.returncode,
                                                                 self.text(self.err_path))
            m = re.search(r"listening on port (\d+)", self.text(self.out_path))
            return m and "node-id " in self.text(self.out_path) and int(m.group(1))
        self.port = poll(listening, 20, what="%s to listen" % self.name)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5):
            pass
        return self.port


def test_units_exec_start_runs_and_stops_cleanly_on_sigterm(dest, tmp_path):
    started = []
    try:
        directory = UnitProcess(dest, str(tmp_path), "peernet-directory.service",
                                {"--listen": "127.0.0.1:0", "--data": str(tmp_path / "dir-data")})
        started.append(directory)
        directory.wait_port()
        node = UnitProcess(dest, str(tmp_path), "peernet-node.service",
                           {"--listen": "127.0.0.1:0", "--data": str(tmp_path / "node-data"),
                            "--directory": "127.0.0.1:%d" % directory.port})
        started.append(node)
        serve = UnitProcess(dest, str(tmp_path), "peernet-serve.service",
                            {"--listen": "127.0.0.1:0", "--data": str(tmp_path / "srv-data")})
        started.append(serve)
        node.wait_port()
        serve.wait_port()
        # The node reached the directory given as the unit's --directory.
        def connected():
            st = subprocess.run([p(dest, "bin", "peernet"), "status", "--json", "--data",
                                 str(tmp_path / "node-data")], stdout=subprocess.PIPE, timeout=30)
            assert st.returncode == 0, st
            d = json.loads(st.stdout)["directory"]
            assert d["address"] == "127.0.0.1:%d" % directory.port, d
            return d["connected"]
        poll(connected, 20, interval=0.2, what="the node to connect to the directory")
        for pr in (node, serve, directory):
            rc = stop_pid(pr.proc, signal.SIGTERM)
            assert rc == 0, "%s exited %d on SIGTERM: %s" % (pr.name, rc, pr.text(pr.err_path)[-2000:])
    finally:
        for pr in started:
            if pr.proc.poll() is None:
                stop_pid(pr.proc, signal.SIGKILL, 10)


def build_example(dest, tmp_path, name):
    """Compiles examples/NAME.c against the installed library, as a user would:
    the installed header and `pkg-config --cflags --libs peernet`, shared."""
    exe = str(tmp_path / name)
    cmd = ["cc", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror", os.path.join(REPO, "examples", name + ".c"),
           "-o", exe] + pkg_config(dest, "--cflags", "--libs")
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, "%s\n%s" % (" ".join(cmd), r.stdout.decode())
    assert "libpeernet.so.%s" % header_version().split(".")[0] in needed(exe)
    return exe, dict(os.environ, LD_LIBRARY_PATH=p(dest, "lib"))


def test_example_two_nodes_moves_a_file_in_one_process(dest, tmp_path):
    exe, env = build_example(dest, tmp_path, "two_nodes")
    src = tmp_path / "holiday video.bin"
    data = os.urandom(3 * 256 * 1024 + 99)
    src.write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run([exe, str(src), str(work)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "holiday video.bin" in out and "(%d bytes streamed)" % len(data) in out, out
    assert (work / "copy").read_bytes() == data


def test_example_embed_get_downloads_from_a_running_network(dest, tmp_path):
    """embed_get, a node inside the example's own loop, fetches a file that a
    `peernet node` (the installed program) shares through a `peernet directory`."""
    exe, env = build_example(dest, tmp_path, "embed_get")
    peernet = p(dest, "bin", "peernet")
    procs = []
    try:
        dport_file, nport_file = str(tmp_path / "dir.port"), str(tmp_path / "node.port")
        procs.append(subprocess.Popen([peernet, "directory", "--listen", "127.0.0.1:0", "--port-file", dport_file],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        dport = int(poll(lambda: open(dport_file).read().strip() if os.path.exists(dport_file) else None, 20,
                         what="the directory's port"))
        ndata = str(tmp_path / "node-data")
        procs.append(subprocess.Popen([peernet, "node", "--listen", "127.0.0.1:0", "--data", ndata,
                                       "--directory", "127.0.0.1:%d" % dport, "--port-file", nport_file],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        poll(lambda: os.path.exists(nport_file) and open(nport_file).read().endswith("\n"), 20,
             what="the node's port")
        src = tmp_path / "shared.bin"
        data = os.urandom(600_000)
        src.write_bytes(data)
        add = subprocess.run([peernet, "add", "--data", ndata, "--json", str(src)], stdout=subprocess.PIPE,
                             check=True, timeout=60)
        cid = json.loads(add.stdout)[0]["id"]
        out = tmp_path / "fetched.bin"
        r = subprocess.run([exe, "127.0.0.1:%d" % dport, cid, str(out), str(tmp_path / "embed-data")], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        assert out.read_bytes() == data
        assert "done: shared.bin" in r.stderr.decode()
        bad = subprocess.run([exe, "127.0.0.1:%d" % dport, "pn1nothing", str(out)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=30)
        assert bad.returncode == 2 and b"not a content ID" in bad.stderr
    finally:
        for pr in reversed(procs):
            assert stop_pid(pr) == 0


def test_internal_headers_refuse_outside_inclusion(tmp_path):
    """Only peernet.h is installed; an internal header reached through the
    source tree stops the compile with a line saying what to include."""
    src = tmp_path / "outside.c"
    src.write_text('#include "node/node.h"\nint main(void) { return 0; }\n')
    r = subprocess.run(["cc", "-fsyntax-only", "-I" + os.path.join(REPO, "include"), "-I" + os.path.join(REPO, "src"),
                        str(src)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode != 0
    assert "internal header of libpeernet" in r.stdout.decode(), r.stdout.decode()
    ok = tmp_path / "inside.c"
    ok.write_text('#include <peernet.h>\nint main(void) { return pn_strerror(0) == 0; }\n')
    r = subprocess.run(["cc", "-fsyntax-only", "-I" + os.path.join(REPO, "include"), str(ok)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()


def test_the_cli_is_compiled_as_an_outside_client(tmp_path):
    """src/cli/ is a client of peernet.h like any program: every build of it
    (normal, sanitizers, the corrupting test build) compiles without
    PN_INTERNAL and without -Isrc, so an internal header included there
    stops the build; the library itself keeps both."""
    def compile_command(obj):
        r = subprocess.run(["make", "-n", "-B", "BUILD=" + str(tmp_path / "b"), str(tmp_path / "b" / obj)],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert r.returncode == 0, r.stdout
        source = obj.split("obj/", 1)[1][:-2] + ".c"
        line = next(l for l in r.stdout.splitlines() if " -c %s " % source in l)
        return line.split()

    for variant in ("obj", "asan/obj", "corrupt/obj"):
        cmd = compile_command(variant + "/src/cli/main.o")
        assert "-DPN_INTERNAL" not in cmd and "-Isrc" not in cmd, (variant, cmd)
        lib = compile_command(variant + "/src/util/log.o")
        assert "-DPN_INTERNAL" in lib and "-Isrc" in lib, (variant, lib)
    # The CLI's flags on a file that reaches an internal header by its path.
    src = tmp_path / "cli_internal.c"
    src.write_text('#include "%s"\nint main(void) { return 0; }\n' % os.path.join(REPO, "src", "util", "log.h"))
    flags = [t for t in compile_command("obj/src/cli/main.o")[1:] if t.startswith(("-I", "-D"))]
    r = subprocess.run(["cc", "-fsyntax-only"] + flags + [str(src)], cwd=REPO, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    assert r.returncode != 0 and "internal header of libpeernet" in r.stdout, r.stdout
