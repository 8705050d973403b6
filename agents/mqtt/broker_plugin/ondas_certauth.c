/*
 * ondas_certauth: the Mosquitto plugin that turns a verified device certificate into an MQTT identity, checks it
 * against the CRLs, and refuses a certificate whose CA is not trusted for the tenant it would act for.
 *
 * Mosquitto's mutual-TLS listener verifies the chain against its cafile (the platform CAs) and capath (every
 * tenant's registered CAs, x509_mgmt's /trusted-cas, as a hashed directory OpenSSL searches at each handshake).
 * It has no crlfile: OpenSSL would then demand a CRL of every CA, and a tenant's CA comes without one; the CRL
 * check is done here. Which CA signed a certificate decides which identity it carries:
 *
 *   - a platform CA (x509_mgmt's issuing CA, the on-disk CA): the certificate's CN <tenant>:<device-id> (the
 *     platform wrote it), if its serial is on none of the CRLs;
 *   - a CA registered by tenant A: the certificate must be registered with x509_mgmt (POST /certificates with
 *     its chain) by tenant A and belong to one of A's devices: the identity is A:<that device>. Revoking it
 *     (DELETE /certificates/{fp}) or deleting the CA removes it from the trust file, so it no longer connects.
 *     Tenant A can therefore never act for tenant B's devices, whatever its CA writes in a certificate.
 *
 * On MOSQ_EVT_BASIC_AUTH (the listener must not set use_identity_as_username, which skips authentication), for a
 * client that presented a certificate, the username becomes that identity (the ACL file's %u patterns and the
 * dynamic security plugin's kicks work on it) or the connection is refused (CONNACK "not authorised") with the
 * reason logged. A client without a certificate (the password listeners) is deferred to the next plugin or the
 * password file.
 *
 * Options (each file is re-read when it changes, checked at each certificate login: no broker restart):
 *   plugin_opt_platform_cas  PEM file: the platform CAs
 *   plugin_opt_crl_file      PEM file: the platform CAs' CRLs; a platform certificate whose CA has no CRL in it,
 *                            or only an expired one, is refused (as OpenSSL's CRL check would)
 *   plugin_opt_tenant_cas    x509_mgmt's device-trust.tsv: "ca TAB <tenant> TAB <base64 DER>" and
 *                            "cert TAB <SHA-256 hex> TAB <tenant>:<device-id>" lines; missing means none
 *
 * Limit: the device certificate must be issued directly by a trusted CA (no intermediate of a tenant CA).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define LINE_MAX_LEN 65536

struct trusted {
	char *tenant; /* NULL: a platform CA */
	X509 *cert;
};

struct registered {
	unsigned char digest[32];
	char *identity;
};

struct stamp {
	bool exists;
	struct timespec mtime;
	off_t size;
	ino_t ino;
};

static mosquitto_plugin_id_t *plugin_id = NULL;
static char *platform_file = NULL;
static char *tenant_file = NULL;
static char *crl_file = NULL;
static struct stamp platform_stamp, tenant_stamp, crl_stamp;
static STACK_OF(X509_CRL) *crls = NULL;
static struct registered *certs = NULL;
static size_t certs_count = 0, certs_cap = 0;
static bool loaded = false;
static struct trusted *cas = NULL;
static size_t cas_count = 0, cas_cap = 0;

static void stamp_of(const char *path, struct stamp *out)
{
	struct stat st;
	memset(out, 0, sizeof(*out));
	if(path && stat(path, &st) == 0){
		out->exists = true;
		out->mtime = st.st_mtim;
		out->size = st.st_size;
		out->ino = st.st_ino;
	}
}

static bool same_stamp(const struct stamp *a, const struct stamp *b)
{
	return a->exists == b->exists && a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec
		&& a->size == b->size && a->ino == b->ino;
}

static void clear_cas(void)
{
	for(size_t i = 0; i < cas_count; i++){
		free(cas[i].tenant);
		X509_free(cas[i].cert);
	}
	cas_count = 0;
	for(size_t i = 0; i < certs_count; i++) free(certs[i].identity);
	certs_count = 0;
	if(crls) sk_X509_CRL_pop_free(crls, X509_CRL_free);
	crls = NULL;
}

static bool add_cert(const unsigned char digest[32], const char *identity)
{
	if(certs_count == certs_cap){
		size_t cap = certs_cap ? certs_cap * 2 : 64;
		struct registered *grown = realloc(certs, cap * sizeof(*certs));
		if(!grown) return false;
		certs = grown;
		certs_cap = cap;
	}
	certs[certs_count].identity = strdup(identity);
	if(!certs[certs_count].identity) return false;
	memcpy(certs[certs_count].digest, digest, 32);
	certs_count++;
	return true;
}

static int hexval(char c)
{
	if(c >= '0' && c <= '9') return c - '0';
	if(c >= 'a' && c <= 'f') return c - 'a' + 10;
	if(c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static void load_crls(void)
{
	crls = sk_X509_CRL_new_null();
	if(!crl_file || !crls) return;
	FILE *f = fopen(crl_file, "r");
	if(!f){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "ondas_certauth: cannot read the CRLs %s: %s", crl_file, strerror(errno));
		return;
	}
	X509_CRL *crl;
	while((crl = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL){
		if(!sk_X509_CRL_push(crls, crl)){
			X509_CRL_free(crl);
			break;
		}
	}
	ERR_clear_error();
	fclose(f);
}

static bool add_ca(const char *tenant, X509 *cert)
{
	if(cas_count == cas_cap){
		size_t cap = cas_cap ? cas_cap * 2 : 16;
		struct trusted *grown = realloc(cas, cap * sizeof(*cas));
		if(!grown) return false;
		cas = grown;
		cas_cap = cap;
	}
	cas[cas_count].tenant = tenant ? strdup(tenant) : NULL;
	if(tenant && !cas[cas_count].tenant) return false;
	cas[cas_count].cert = cert;
	cas_count++;
	return true;
}

static void load_platform(void)
{
	FILE *f = fopen(platform_file, "r");
	if(!f){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "ondas_certauth: cannot read the platform CAs %s: %s", platform_file,
				strerror(errno));
		return;
	}
	X509 *cert;
	size_t n = 0;
	while((cert = PEM_read_X509(f, NULL, NULL, NULL)) != NULL){
		if(!add_ca(NULL, cert)){
			X509_free(cert);
			break;
		}
		n++;
	}
	ERR_clear_error();
	fclose(f);
	if(n == 0) mosquitto_log_printf(MOSQ_LOG_WARNING, "ondas_certauth: no certificate in %s", platform_file);
}

static void load_tenants(void)
{
	FILE *f = tenant_file ? fopen(tenant_file, "r") : NULL;
	if(!f) return; /* no tenant CA registered yet */
	char *line = malloc(LINE_MAX_LEN);
	unsigned char *der = malloc(LINE_MAX_LEN);
	if(!line || !der){
		free(line);
		free(der);
		fclose(f);
		return;
	}
	size_t lineno = 0;
	while(fgets(line, LINE_MAX_LEN, f)){
		lineno++;
		size_t len = strcspn(line, "\r\n");
		line[len] = '\0';
		if(len == 0 || line[0] == '#') continue;
		char *kind = line;
		char *tab1 = strchr(line, '\t');
		char *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
		if(!tab1 || !tab2 || tab2 == tab1 + 1 || tab2[1] == '\0'){
			mosquitto_log_printf(MOSQ_LOG_WARNING, "ondas_certauth: %s:%zu: not <kind> TAB <key> TAB <value>",
					tenant_file, lineno);
			continue;
		}
		*tab1 = '\0';
		*tab2 = '\0';
		const char *key = tab1 + 1, *value = tab2 + 1;
		if(!strcmp(kind, "cert")){
			unsigned char digest[32];
			bool ok = strlen(key) == 64 && strchr(value, ':') != NULL;
			for(int i = 0; ok && i < 32; i++){
				int hi = hexval(key[2 * i]), lo = hexval(key[2 * i + 1]);
				if(hi < 0 || lo < 0) ok = false;
				else digest[i] = (unsigned char)(hi * 16 + lo);
			}
			if(!ok){
				mosquitto_log_printf(MOSQ_LOG_WARNING, "ondas_certauth: %s:%zu: bad cert line", tenant_file, lineno);
				continue;
			}
			if(!add_cert(digest, value)) break;
			continue;
		}
		if(strcmp(kind, "ca")){
			continue; /* a kind of a later version */
		}
		int n = EVP_DecodeBlock(der, (const unsigned char *)value, (int)strlen(value));
		if(n <= 0){
			mosquitto_log_printf(MOSQ_LOG_WARNING, "ondas_certauth: %s:%zu: bad base64", tenant_file, lineno);
			continue;
		}
		const unsigned char *p = der;
		X509 *cert = d2i_X509(NULL, &p, n);
		if(!cert){
			ERR_clear_error();
			mosquitto_log_printf(MOSQ_LOG_WARNING, "ondas_certauth: %s:%zu: not a DER certificate", tenant_file,
					lineno);
			continue;
		}
		if(!add_ca(key, cert)){
			X509_free(cert);
			break;
		}
	}
	free(line);
	free(der);
	fclose(f);
}

static void reload_if_changed(void)
{
	struct stamp p, t, c;
	stamp_of(platform_file, &p);
	stamp_of(tenant_file, &t);
	stamp_of(crl_file, &c);
	if(loaded && same_stamp(&p, &platform_stamp) && same_stamp(&t, &tenant_stamp) && same_stamp(&c, &crl_stamp)) return;
	clear_cas();
	load_platform();
	load_tenants();
	load_crls();
	platform_stamp = p;
	tenant_stamp = t;
	crl_stamp = c;
	loaded = true;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "ondas_certauth: %zu trusted CAs, %zu registered certificates, %d CRLs loaded",
			cas_count, certs_count, crls ? sk_X509_CRL_num(crls) : 0);
}

/* The subject's only CN as a NUL-terminated UTF-8 string (free with OPENSSL_free), or NULL. */
static char *only_cn(X509 *cert)
{
	X509_NAME *subject = X509_get_subject_name(cert);
	int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	if(idx < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, idx) >= 0) return NULL;
	unsigned char *utf8 = NULL;
	int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
	if(len <= 0) return NULL;
	if((int)strlen((char *)utf8) != len){ /* an embedded NUL */
		OPENSSL_free(utf8);
		return NULL;
	}
	return (char *)utf8;
}

/* NULL when a platform CA's certificate passes the CRLs, else why not. */
static const char *crl_refusal(X509 *cert, X509 *issuer)
{
	bool have_crl = false;
	for(int i = 0; crls && i < sk_X509_CRL_num(crls); i++){
		X509_CRL *crl = sk_X509_CRL_value(crls, i);
		if(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0) continue;
		EVP_PKEY *key = X509_get0_pubkey(issuer);
		if(!key || X509_CRL_verify(crl, key) != 1){
			ERR_clear_error();
			continue;
		}
		const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
		if(next && X509_cmp_current_time(next) < 0) continue; /* expired: as if absent */
		have_crl = true;
		X509_REVOKED *revoked = NULL;
		if(X509_CRL_get0_by_cert(crl, &revoked, cert) == 1) return "the certificate is revoked (on its CA's CRL)";
	}
	return have_crl ? NULL : "its CA has no current CRL";
}

static const struct registered *registration_of(X509 *cert)
{
	unsigned char digest[32];
	unsigned int len = 0;
	if(X509_digest(cert, EVP_sha256(), digest, &len) != 1 || len != 32) return NULL;
	for(size_t i = 0; i < certs_count; i++){
		if(!memcmp(certs[i].digest, digest, 32)) return &certs[i];
	}
	return NULL;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_basic_auth *ed = event_data;
	X509 *cert = mosquitto_client_certificate(ed->client);
	if(!cert) return MOSQ_ERR_PLUGIN_DEFER;

	const char *client_id = mosquitto_client_id(ed->client);
	char *cn = only_cn(cert);
	const char *identity = NULL;
	const char *refusal = "no CA the platform or a tenant trusts issued it";
	reload_if_changed();
	for(size_t i = 0; i < cas_count && !identity; i++){
		if(X509_check_issued(cas[i].cert, cert) != X509_V_OK) continue;
		EVP_PKEY *key = X509_get0_pubkey(cas[i].cert);
		if(!key || X509_verify(cert, key) != 1){
			ERR_clear_error();
			continue;
		}
		if(cas[i].tenant == NULL){
			char *colon = cn ? strchr(cn, ':') : NULL;
			if(!cn || !colon || colon == cn || colon[1] == '\0'){
				refusal = "a platform certificate's subject must have one CN <tenant>:<device-id>";
				break;
			}
			refusal = crl_refusal(cert, cas[i].cert);
			if(!refusal) identity = cn;
			break;
		}
		const struct registered *reg = registration_of(cert);
		size_t tlen = strlen(cas[i].tenant);
		if(!reg){
			refusal = "issued by a tenant's CA but not registered with x509_mgmt (or revoked)";
		}else if(strncmp(reg->identity, cas[i].tenant, tlen) != 0 || reg->identity[tlen] != ':'){
			refusal = "registered by another tenant than the one trusting its CA";
		}else{
			identity = reg->identity;
		}
		/* another tenant may trust the same CA: keep looking */
	}
	ERR_clear_error();
	int rc = MOSQ_ERR_AUTH;
	if(!identity){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "ondas_certauth: refused client %s (certificate CN %s): %s",
				client_id ? client_id : "?", cn ? cn : "none", refusal);
	}else if(mosquitto_set_username(ed->client, identity) != MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "ondas_certauth: cannot set the username of %s", identity);
	}else{
		rc = MOSQ_ERR_SUCCESS;
	}
	if(cn) OPENSSL_free(cn);
	X509_free(cert);
	return rc;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	plugin_id = identifier;
	for(int i = 0; i < opt_count; i++){
		if(!strcmp(opts[i].key, "platform_cas")) platform_file = strdup(opts[i].value);
		else if(!strcmp(opts[i].key, "tenant_cas")) tenant_file = strdup(opts[i].value);
		else if(!strcmp(opts[i].key, "crl_file")) crl_file = strdup(opts[i].value);
	}
	if(!platform_file){
		mosquitto_log_printf(MOSQ_LOG_ERR, "ondas_certauth: plugin_opt_platform_cas is required");
		return MOSQ_ERR_INVAL;
	}
	reload_if_changed();
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	clear_cas();
	free(cas);
	cas = NULL;
	cas_cap = 0;
	free(platform_file);
	free(tenant_file);
	free(crl_file);
	free(certs);
	certs = NULL;
	certs_cap = 0;
	platform_file = tenant_file = crl_file = NULL;
	loaded = false;
	return MOSQ_ERR_SUCCESS;
}
