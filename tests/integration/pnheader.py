"""What include/peernet.h declares, read from its text: the tests of the
installed library and of the man pages compare against it, so nothing is
listed twice by hand."""
import os
import re

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def header_text():
    with open(os.path.join(REPO, "include", "peernet.h")) as f:
        return f.read()


def header_version():
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH"):
        m = re.search(r'^#define PN_VERSION_%s ([0-9]+)$' % part, header_text(), re.M)
        assert m, "no PN_VERSION_%s in peernet.h" % part
        parts.append(m.group(1))
    return ".".join(parts)


def header_extern_names():
    """Names of everything peernet.h declares PN_EXTERN: in the text from the
    macro to the next ';', the first identifier before a '(' that is not an
    upper-case macro (a function), else the last identifier (data)."""
    text = re.sub(r"/\*.*?\*/", " ", header_text(), flags=re.S)
    text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)  # the macro's own definition
    names = []
    for m in re.finditer(r"\bPN_EXTERN\b([^;]*);", text):
        decl = m.group(1)
        calls = [n for n in re.findall(r"([A-Za-z_]\w*)\s*\(", decl) if not n.isupper()]
        names.append(calls[0] if calls else re.findall(r"[A-Za-z_]\w*", decl.split("[")[0])[-1])
    return names


def header_error_codes():
    """The PN_E... names of enum pn_err (PN_OK and the PN_ERR_MIN_ bound left out)."""
    return re.findall(r"^\s*(PN_E[A-Z0-9]+)\s*=", header_text(), re.M)
