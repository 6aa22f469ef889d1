# Sourced by scripts/test: the Debian packages some tests drive for real,
# installed when missing: prometheus (promtool and a real scrape of the plugin) and chromium
# (the report page in a headless browser). Without root or apt-get it installs nothing and
# says so once; the tests that need a missing program then skip, naming it.
# PLUGIN_NO_SYSTEM_PACKAGES=1 skips this step.
system_packages() {
  local missing=()
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "${PLUGIN_NO_SYSTEM_PACKAGES:-}" = 1 ]; then
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: ${missing[*]} not installed (needs root and apt-get); the tests that use them skip" >&2
    return 0
  fi
  echo "installing Debian packages: ${missing[*]} ..." >&2
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "note: could not install ${missing[*]}; the tests that use them skip" >&2
  fi
}
system_packages
