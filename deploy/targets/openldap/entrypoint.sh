#!/bin/sh
# First start: adds ou=services and the gateway's service account (offline, with slapadd,
# before slapd runs), hashing the password demo-init made. Then runs slapd in the foreground.
set -eu
marker=/var/lib/ldap/.gatehouse-demo
if [ ! -e "$marker" ]; then
  hash="$(slappasswd -T /demo/openldap/gatehouse-password)"
  slapadd -b dc=example,dc=com <<LDIF
dn: ou=services,dc=example,dc=com
objectClass: organizationalUnit
ou: services

dn: cn=gatehouse,ou=services,dc=example,dc=com
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: gatehouse
userPassword: $hash
LDIF
  chown -R openldap:openldap /var/lib/ldap
  touch "$marker"
fi
# The pid file's directory is made by the init script, which a container does not run.
mkdir -p /var/run/slapd && chown openldap:openldap /var/run/slapd
exec /usr/sbin/slapd -d 0 -h "ldap:///" -u openldap -g openldap
