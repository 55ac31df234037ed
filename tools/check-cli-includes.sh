#!/bin/sh
# Fails unless every #include of the C files in DIR (src/cli) names
# <peernet.h>, <uv.h>, a header of ISO C or POSIX (the list below), glibc's
# <getopt.h> or <sys/random.h>, or one of the CLI's own headers ("cli.h", "progress.h",
# "demo.h"): the CLI is a client of the public API and nothing else
# (issue 12), so jansson, OpenSSL or a header of src/ are refused. An
# include that a macro hides (#include FOO) is refused too.
#
#   sh tools/check-cli-includes.sh src/cli
set -u
dir=${1:?usage: check-cli-includes.sh DIR}

# ISO C11 and POSIX.1-2017 headers, and glibc's getopt.h and sys/random.h.
allowed_system='
assert.h complex.h ctype.h errno.h fenv.h float.h inttypes.h iso646.h limits.h
locale.h math.h setjmp.h signal.h stdalign.h stdarg.h stdatomic.h stdbool.h
stddef.h stdint.h stdio.h stdlib.h stdnoreturn.h string.h tgmath.h threads.h
time.h uchar.h wchar.h wctype.h
aio.h arpa/inet.h cpio.h dirent.h dlfcn.h fcntl.h fmtmsg.h fnmatch.h ftw.h
glob.h grp.h iconv.h langinfo.h libgen.h monetary.h mqueue.h ndbm.h net/if.h
netdb.h netinet/in.h netinet/tcp.h nl_types.h poll.h pthread.h pwd.h regex.h
sched.h search.h semaphore.h spawn.h strings.h stropts.h sys/ipc.h sys/mman.h
sys/msg.h sys/resource.h sys/select.h sys/sem.h sys/shm.h sys/socket.h
sys/stat.h sys/statvfs.h sys/time.h sys/times.h sys/types.h sys/uio.h sys/un.h
sys/utsname.h sys/wait.h syslog.h tar.h termios.h trace.h ulimit.h unistd.h
utime.h utmpx.h wordexp.h
getopt.h sys/random.h
peernet.h uv.h'
allowed_local='cli.h progress.h demo.h'

files=$(find "$dir" -name '*.[ch]' | sort)
[ -n "$files" ] || { echo "check-cli-includes: no C files under $dir" >&2; exit 1; }
bad=0
for f in $files; do
	# every preprocessor line that includes, whatever its spacing
	grep -n '^[[:space:]]*#[[:space:]]*include' "$f" | while IFS= read -r line; do
		num=${line%%:*}
		text=${line#*:}
		name=$(printf '%s\n' "$text" | sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*\([<"][^>"]*[>"]\).*/\1/p')
		case "$name" in
		\<*\>)
			h=${name#<}; h=${h%>}
			ok=no
			for a in $allowed_system; do [ "$h" = "$a" ] && ok=yes; done ;;
		\"*\")
			h=${name#\"}; h=${h%\"}
			ok=no
			for a in $allowed_local; do [ "$h" = "$a" ] && ok=yes; done ;;
		*)
			ok=no ;;
		esac
		if [ "$ok" != yes ]; then
			echo "$f:$num: $text: src/cli may include only <peernet.h>, <uv.h>, libc/POSIX headers and its own cli.h, progress.h, demo.h" >&2
			echo bad
		fi
	done
done | grep bad >/dev/null && bad=1
if [ "$bad" -ne 0 ]; then
	exit 1
fi
echo "src/cli includes only <peernet.h>, <uv.h>, libc/POSIX and its own headers ($(echo "$files" | wc -l) files)"
