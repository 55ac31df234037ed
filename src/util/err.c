#include "peernet.h"

const char *pn_strerror(int err)
{
	switch (err) {
	case PN_OK: return "success";
	case PN_EINVAL: return "invalid argument";
	case PN_ENOMEM: return "out of memory";
	case PN_EPROTO: return "protocol error (malformed or unexpected message)";
	case PN_ETOOBIG: return "length exceeds its limit";
	case PN_EAGAIN: return "incomplete data";
	case PN_EIO: return "input/output error";
	case PN_ENOTFOUND: return "not found";
	case PN_EEXIST: return "already exists";
	case PN_ECORRUPT: return "data does not match its hash";
	case PN_ETLS: return "secure channel (TLS) failure";
	case PN_EPEERID: return "peer identity does not match the expected node ID";
	case PN_ETIMEDOUT: return "timed out";
	case PN_ECONNREFUSED: return "connection refused or unreachable";
	case PN_ENOSPC: return "no space left on device";
	case PN_ECLOSED: return "connection closed";
	case PN_EBADID: return "malformed content ID";
	case PN_ELIMIT: return "limit exceeded";
	case PN_ENOTSUP: return "not supported";
	case PN_EACCES: return "permission denied";
	case PN_ELINK: return "a symbolic link is in the way (peernet does not follow it)";
	case PN_ECANCELED: return "cancelled";
	case PN_EBUSY: return "busy (not in a state that allows this)";
	case PN_EREMOTE: return "the other side refused the request";
	default: return "unknown error";
	}
}

const char *pn_version(void)
{
	return PN_VERSION_STRING;
}
