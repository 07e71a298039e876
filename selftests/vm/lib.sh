# shellcheck shell=bash
# Shared helpers for the selftests/vm scripts.  Sourced, not executed.

vm_log() { printf '%s: %s\n' "${PROG:-vm}" "$*" >&2; }
vm_die() { vm_log "error: $*"; exit 1; }

# apt_update_once: run `apt-get update` at most once per script run.
VM_APT_UPDATED=${VM_APT_UPDATED:-0}
apt_update_once() {
	if [ "$VM_APT_UPDATED" = 0 ]; then
		vm_log "apt-get update"
		apt-get update -qq -o DPkg::Lock::Timeout=600 >&2 || vm_die "apt-get update failed"
		VM_APT_UPDATED=1
	fi
}

# apt_install PKG...: install packages non-interactively.  `apt-get update`
# is only run when a package is unknown or the first install attempt fails
# (e.g. stale package lists pointing at a removed .deb).
apt_install() {
	[ "$#" -gt 0 ] || return 0
	[ "$(id -u)" = 0 ] || vm_die "need root to install: $*"
	local p need_update=0
	for p in "$@"; do
		if ! apt-cache show --no-all-versions "$p" >/dev/null 2>&1; then
			need_update=1
		fi
	done
	[ "$need_update" = 0 ] || apt_update_once
	vm_log "apt-get install $*"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
		--no-install-recommends "$@" >&2; then
		apt_update_once
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
			--no-install-recommends "$@" >&2 ||
			vm_die "apt-get install $* failed"
	fi
}

# pkg_installed PKG: true if the Debian package is installed.
pkg_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# need_cmds CMD:PKG ...: install PKG for every CMD (or absolute path) missing.
need_cmds() {
	local spec cmd pkg missing=()
	for spec in "$@"; do
		cmd=${spec%%:*}
		pkg=${spec#*:}
		case $cmd in
		/*) [ -e "$cmd" ] && continue ;;
		*) command -v "$cmd" >/dev/null 2>&1 && continue ;;
		esac
		missing+=("$pkg")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		apt_install "${missing[@]}"
	fi
}
