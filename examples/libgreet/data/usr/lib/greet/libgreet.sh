# libgreet: sourced by programs that greet. $greet_usr is the usr folder the
# caller was installed into, so the library works under any --prefix.
greet() {
	greeting=$(cat "$greet_usr/share/greet/greeting.txt") || return 1
	printf '%s, %s!\n' "$greeting" "${1:-world}"
}
