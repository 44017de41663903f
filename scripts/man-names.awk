# Makes swift-argument-parser's generated subcommand pages (.Nm "vaultctl backup") parse
# for whatis/apropos and lintian: the NAME section names the page as its file does
# (vaultctl.backup), and every later bare .Nm spells the command as it is typed.
# Usage: awk -f man-names.awk PAGE > FIXED
!named && /^\.Nm "[^"]* [^"]*"$/ {
    command = substr($0, 6, length($0) - 6)
    page = command
    gsub(/ /, ".", page)
    print ".Nm " page
    named = 1
    next
}
named && $0 == ".Nm" { print ".Nm \"" command "\""; next }
{ print }
