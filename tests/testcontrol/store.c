/* The state directory: the server's Noise key (noise.key), the nodes and
 * pre-auth keys (state.json), and the test CA (ca.pem, ca.key) with a server
 * certificate made at every start. Every file holding a secret is 0600 and
 * written atomically (temporary file, rename). */
#include "tc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "keys.h"
#include "log.h"
#include "mem.h"

long long tc_now(void)
{
	return (long long)time(NULL);
}

void tc_time_format(char out[static 40], long long t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, 40, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Writes path as a whole: a temporary file renamed over it, so a reader or
 * a restart after kill -9 sees the old or the new content, never a mix.
 * durable adds an fsync first (power loss); the state file, rewritten on
 * every registration, goes without it: 100 pods registering at once would
 * otherwise wait on the disk. */
static int write_atomic(const char *path, const void *p, size_t n, mode_t mode, bool durable)
{
	char *tmp = xasprintf("%s.tmp", path);
	int fd, ret = 0;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = write_all(fd, p, n);
	if (ret == 0 && durable && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret < 0)
		unlink(tmp);
out:
	free(tmp);
	return ret;
}

/* Reads a whole small file (at most max bytes). */
static int read_small(const char *path, char **out, size_t max)
{
	char *buf = NULL;
	size_t have = 0;
	ssize_t r;
	int fd, ret = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = xmalloc(max + 1);
	while ((r = read(fd, buf + have, max - have)) > 0) {
		have += (size_t)r;
		if (have == max) {
			ret = -EFBIG;
			break;
		}
	}
	if (r < 0)
		ret = -errno;
	close(fd);
	if (ret < 0) {
		free(buf);
		return ret;
	}
	buf[have] = '\0';
	*out = buf;
	return 0;
}

int store_noise_key(struct tc_server *s)
{
	char *path = xasprintf("%s/noise.key", s->state_dir);
	char *text = NULL, line[80];
	uint8_t other[32];
	int ret;

	ret = read_small(path, &text, 256);
	if (ret == 0) {
		text[strcspn(text, "\r\n")] = '\0';
		ret = keys_from_text("privkey", text, s->noise_priv);
		if (ret < 0)
			log_err("%s: not a privkey:<64 hex> line", path);
	} else if (ret == -ENOENT) {
		keys_generate(s->noise_priv);
		keys_to_text("privkey", s->noise_priv, line, sizeof(line));
		strcat(line, "\n");
		ret = write_atomic(path, line, strlen(line), 0600, true);
		sodium_memzero(line, sizeof(line));
		if (ret < 0)
			log_err_r(ret, "write %s", path);
	} else {
		log_err_r(ret, "read %s", path);
	}
	if (ret == 0)
		ret = keys_public(s->noise_pub, s->noise_priv);
	/* The key the wrong_key switch advertises: nobody holds its private half. */
	keys_generate(other);
	if (ret == 0)
		ret = keys_public(s->wrong_pub, other);
	sodium_memzero(other, sizeof(other));
	if (text)
		sodium_memzero(text, strlen(text));
	free(text);
	free(path);
	return ret;
}

static json_t *node_to_json(const struct tc_node *n)
{
	char nk[80], mk[80], dk[80];
	json_t *o;

	keys_to_text("nodekey", n->node_key, nk, sizeof(nk));
	o = json_pack("{s:I, s:s, s:s, s:I, s:O, s:O, s:b, s:b, s:b, s:b, s:b, s:i, s:i, s:I, s:I}",
		      "id", (json_int_t)n->id, "node_key", nk, "hostname", n->hostname, "index",
		      (json_int_t)n->index, "tags", n->tags, "endpoints", n->endpoints, "ephemeral",
		      n->ephemeral, "authorized", n->authorized, "logged_out", n->logged_out,
		      "external", n->external, "wg_only", n->wg_only, "home_derp", n->home_derp,
		      "cap", n->cap, "key_expiry", (json_int_t)n->key_expiry, "created",
		      (json_int_t)n->created);
	if (n->has_machine)
		json_object_set_new(o, "machine_key",
				    json_string(keys_to_text("mkey", n->machine, mk, sizeof(mk))));
	if (n->has_disco)
		json_object_set_new(
			o, "disco_key",
			json_string(keys_to_text("discokey", n->disco, dk, sizeof(dk))));
	if (n->hostinfo)
		json_object_set(o, "hostinfo", n->hostinfo);
	if (n->addresses)
		json_object_set(o, "addresses", n->addresses);
	if (n->routes)
		json_object_set(o, "routes", n->routes);
	json_object_set_new(o, "last_seen", json_integer(n->last_seen));
	json_object_set_new(o, "user_id", json_integer(n->user_id));
	return o;
}

int store_save(struct tc_server *s)
{
	json_t *root = json_object(), *nodes = json_array(), *keys = json_array();
	char *path = xasprintf("%s/state.json", s->state_dir), *text;
	int ret;

	for (struct tc_node *n = s->nodes; n; n = n->next)
		json_array_append_new(nodes, node_to_json(n));
	for (struct tc_key *k = s->keys; k; k = k->next)
		json_array_append_new(
			keys,
			json_pack("{s:s, s:s, s:s, s:b, s:b, s:b, s:b, s:I, s:I, s:I, s:O}", "key",
				  k->key, "id", k->id, "description", k->desc, "reusable",
				  k->reusable, "ephemeral", k->ephemeral, "preauthorized",
				  k->preauthorized, "used", k->used, "expires",
				  (json_int_t)k->expires, "created", (json_int_t)k->created,
				  "user_id", (json_int_t)k->user_id, "tags", k->tags));
	json_object_set_new(root, "next_id", json_integer(s->next_id));
	json_object_set_new(root, "next_index", json_integer(s->next_index));
	json_object_set_new(root, "nodes", nodes);
	json_object_set_new(root, "keys", keys);
	text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
	/* 0600: the file holds the pre-auth keys. */
	ret = write_atomic(path, text, strlen(text), 0600, false);
	if (ret < 0)
		log_err_r(ret, "write %s", path);
	sodium_memzero(text, strlen(text));
	free(text);
	json_decref(root);
	free(path);
	return ret;
}

static bool get_bool(json_t *o, const char *k)
{
	return json_is_true(json_object_get(o, k));
}

static const char *get_str(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v ? v : "";
}

static int load_node(struct tc_server *s, json_t *o, const char **why)
{
	struct tc_node *n = xcalloc(1, sizeof(*n));
	const char *text;
	json_t *v;

	*why = "node without id, node_key or index";
	if (!json_is_integer(json_object_get(o, "id")) ||
	    !json_is_integer(json_object_get(o, "index")) ||
	    !(text = json_string_value(json_object_get(o, "node_key"))) ||
	    keys_from_text("nodekey", text, n->node_key) < 0)
		goto bad;
	n->id = json_integer_value(json_object_get(o, "id"));
	n->index = (uint32_t)json_integer_value(json_object_get(o, "index"));
	*why = "node hostname";
	text = json_string_value(json_object_get(o, "hostname"));
	if (!text || strscpy(n->hostname, text, sizeof(n->hostname)) < 0)
		goto bad;
	text = json_string_value(json_object_get(o, "machine_key"));
	if (text) {
		*why = "node machine_key";
		if (keys_from_text("mkey", text, n->machine) < 0)
			goto bad;
		n->has_machine = true;
	}
	text = json_string_value(json_object_get(o, "disco_key"));
	if (text) {
		*why = "node disco_key";
		if (keys_from_text("discokey", text, n->disco) < 0)
			goto bad;
		n->has_disco = true;
	}
	v = json_object_get(o, "tags");
	n->tags = json_is_array(v) ? json_incref(v) : json_array();
	v = json_object_get(o, "endpoints");
	n->endpoints = json_is_array(v) ? json_incref(v) : json_array();
	v = json_object_get(o, "hostinfo");
	n->hostinfo = json_is_object(v) ? json_incref(v) : NULL;
	v = json_object_get(o, "addresses");
	n->addresses = json_is_array(v) ? json_incref(v) : NULL;
	v = json_object_get(o, "routes");
	n->routes = json_is_array(v) ? json_incref(v) : NULL;
	n->ephemeral = get_bool(o, "ephemeral");
	n->authorized = get_bool(o, "authorized");
	n->logged_out = get_bool(o, "logged_out");
	n->external = get_bool(o, "external");
	n->wg_only = get_bool(o, "wg_only");
	n->home_derp = (int)json_integer_value(json_object_get(o, "home_derp"));
	n->cap = (int)json_integer_value(json_object_get(o, "cap"));
	n->key_expiry = json_integer_value(json_object_get(o, "key_expiry"));
	n->created = json_integer_value(json_object_get(o, "created"));
	n->last_seen = json_integer_value(json_object_get(o, "last_seen"));
	n->user_id = json_integer_value(json_object_get(o, "user_id"));
	control_node_insert(s, n);
	return 0;
bad:
	control_node_free(n);
	return -EINVAL;
}

int store_load(struct tc_server *s)
{
	char *path = xasprintf("%s/state.json", s->state_dir), *text = NULL;
	const char *why = NULL;
	json_error_t jerr;
	json_t *root = NULL, *v;
	size_t i;
	int ret;

	s->next_id = 1;
	s->next_index = 1;
	ret = read_small(path, &text, 64 << 20);
	if (ret == -ENOENT) {
		ret = 0;
		goto out;
	}
	if (ret < 0) {
		log_err_r(ret, "read %s", path);
		goto out;
	}
	root = json_loads(text, 0, &jerr);
	if (!json_is_object(root)) {
		log_err("%s: not a JSON object (line %d: %s)", path, jerr.line, jerr.text);
		ret = -EINVAL;
		goto out;
	}
	s->next_id = json_integer_value(json_object_get(root, "next_id"));
	s->next_index = (uint32_t)json_integer_value(json_object_get(root, "next_index"));
	if (s->next_id < 1 || s->next_index < 1) {
		log_err("%s: next_id and next_index must be positive", path);
		ret = -EINVAL;
		goto out;
	}
	json_array_foreach(json_object_get(root, "nodes"), i, v)
	{
		ret = load_node(s, v, &why);
		if (ret < 0) {
			log_err("%s: node %zu: bad %s", path, i, why);
			goto out;
		}
	}
	json_array_foreach(json_object_get(root, "keys"), i, v)
	{
		struct tc_key *k = xcalloc(1, sizeof(*k));
		const char *key = json_string_value(json_object_get(v, "key"));

		if (!key || strscpy(k->key, key, sizeof(k->key)) < 0) {
			free(k);
			log_err("%s: key %zu: no key string", path, i);
			ret = -EINVAL;
			goto out;
		}
		k->reusable = get_bool(v, "reusable");
		k->ephemeral = get_bool(v, "ephemeral");
		k->preauthorized = get_bool(v, "preauthorized");
		k->used = get_bool(v, "used");
		k->expires = json_integer_value(json_object_get(v, "expires"));
		k->created = json_integer_value(json_object_get(v, "created"));
		k->user_id = json_integer_value(json_object_get(v, "user_id"));
		strscpy(k->id, get_str(v, "id"), sizeof(k->id));
		strscpy(k->desc, get_str(v, "description"), sizeof(k->desc));
		k->tags = json_is_array(json_object_get(v, "tags"))
				  ? json_incref(json_object_get(v, "tags"))
				  : json_array();
		k->next = s->keys;
		s->keys = k;
	}
out:
	json_decref(root);
	if (text)
		sodium_memzero(text, strlen(text));
	free(text);
	free(path);
	return ret;
}

/* TLS: a P-256 CA kept in the state directory (so clients that loaded
 * ca.pem keep trusting us across restarts) and a fresh server certificate
 * for 127.0.0.1, ::1 and localhost, signed by it. */
static EVP_PKEY *new_key(void)
{
	return EVP_EC_gen("P-256");
}

static X509 *new_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca,
		      long serial)
{
	X509 *x = X509_new();
	X509_NAME *name;
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	const char *exts[][2] = {
		{"basicConstraints", ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
		{"keyUsage", ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"},
		{"subjectAltName", ca ? NULL : "IP:127.0.0.1,IP:::1,DNS:localhost"},
		{"extendedKeyUsage", ca ? NULL : "serverAuth"},
	};

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), ca ? 10L * 365 * 86400 : 365L * 86400);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		if (!exts[i][1])
			continue;
		ext = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]);
		if (!ext)
			goto err;
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
		goto err;
	return x;
err:
	X509_free(x);
	return NULL;
}

static int load_ca(const char *cert_path, const char *key_path, X509 **cert, EVP_PKEY **key)
{
	FILE *f;

	*cert = NULL;
	*key = NULL;
	f = fopen(cert_path, "re");
	if (!f)
		return -errno;
	*cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	f = fopen(key_path, "re");
	if (!f)
		return -errno;
	*key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!*cert || !*key || X509_check_private_key(*cert, *key) != 1)
		return -EINVAL;
	return 0;
}

static int save_pem(const char *path, X509 *cert, EVP_PKEY *key, mode_t mode)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data;
	long n;
	int ret;

	if (cert)
		PEM_write_bio_X509(b, cert);
	else
		PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(b, &data);
	ret = write_atomic(path, data, (size_t)n, mode, true);
	BIO_free(b);
	return ret;
}

int store_tls(struct tc_server *s)
{
	char *key_path = xasprintf("%s/ca.key", s->state_dir);
	X509 *ca = NULL, *cert = NULL;
	EVP_PKEY *ca_key = NULL, *key = NULL;
	int ret;

	snprintf(s->ca_path, sizeof(s->ca_path), "%s/ca.pem", s->state_dir);
	ret = load_ca(s->ca_path, key_path, &ca, &ca_key);
	if (ret == -ENOENT) {
		X509_free(ca);
		EVP_PKEY_free(ca_key);
		ca_key = new_key();
		ca = ca_key ? new_cert(ca_key, "testcontrol CA", NULL, NULL, true, 1) : NULL;
		if (!ca) {
			log_err("cannot make the test CA");
			ret = -EIO;
			goto out;
		}
		ret = save_pem(key_path, NULL, ca_key, 0600);
		if (ret == 0)
			ret = save_pem(s->ca_path, ca, NULL, 0644);
		if (ret < 0) {
			log_err_r(ret, "write the test CA into %s", s->state_dir);
			goto out;
		}
	} else if (ret < 0) {
		log_err_r(ret, "load %s and %s", s->ca_path, key_path);
		goto out;
	}
	key = new_key();
	cert = key ? new_cert(key, "127.0.0.1", ca, ca_key, false, (long)tc_now()) : NULL;
	s->ssl_ctx = SSL_CTX_new(TLS_server_method());
	if (!cert || !s->ssl_ctx || SSL_CTX_use_certificate(s->ssl_ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey(s->ssl_ctx, key) != 1 ||
	    SSL_CTX_add1_chain_cert(s->ssl_ctx, ca) != 1) {
		log_err("cannot set up the TLS server context: %s",
			ERR_reason_error_string(ERR_get_error()));
		ret = -EIO;
		goto out;
	}
	SSL_CTX_set_min_proto_version(s->ssl_ctx, TLS1_2_VERSION);
	ret = 0;
out:
	X509_free(ca);
	X509_free(cert);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(key);
	free(key_path);
	return ret;
}
