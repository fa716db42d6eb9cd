#!/bin/sh
# Every start: copies the TLS key pair demo-init made for host openldap (/demo/openldap, which
# only root reads) to where slapd's user, openldap, can read it.
# First start, offline, before slapd runs: points cn=config's TLS settings at those files
# (slapmodify; the gateway requires StartTLS to the directory and pins this certificate on
# first use), then adds ou=services and the gateway's service account (slapadd), hashing the
# password demo-init made.
# Then runs slapd in the foreground on ldap:/// (plain and StartTLS) and ldapi:///.
set -eu
config=/etc/ldap/slapd.d
tls=/etc/ldap/tls
install -d -o root -g openldap -m 0750 "$tls"
install -o root -g openldap -m 0644 /demo/openldap/server.pem "$tls/server.pem"
install -o root -g openldap -m 0640 /demo/openldap/server.key "$tls/server.key"
install -o root -g openldap -m 0644 /demo/ca.pem "$tls/ca.pem"

marker=/var/lib/ldap/.gatehouse-demo
if [ ! -e "$marker" ]; then
  slapmodify -F "$config" -n 0 <<LDIF
dn: cn=config
changetype: modify
replace: olcTLSCACertificateFile
olcTLSCACertificateFile: $tls/ca.pem
-
replace: olcTLSCertificateFile
olcTLSCertificateFile: $tls/server.pem
-
replace: olcTLSCertificateKeyFile
olcTLSCertificateKeyFile: $tls/server.key
LDIF
  hash="$(slappasswd -T /demo/openldap/gatehouse-password)"
  slapadd -F "$config" -b dc=example,dc=com <<LDIF
dn: ou=services,dc=example,dc=com
objectClass: organizationalUnit
ou: services

dn: cn=gatehouse,ou=services,dc=example,dc=com
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: gatehouse
userPassword: $hash
LDIF
  # The tools ran as root: what they wrote must stay the openldap user's.
  chown -R openldap:openldap "$config" /var/lib/ldap
  touch "$marker"
fi
# The pid file's and ldapi socket's directory is made by the init script, which a container
# does not run.
mkdir -p /var/run/slapd && chown openldap:openldap /var/run/slapd
exec /usr/sbin/slapd -d 0 -F "$config" -h "ldap:/// ldapi:///" -u openldap -g openldap
