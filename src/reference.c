/* The distribution reference grammar (as the docker CLI applies it) and API version strings. */
#include "reference.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return false;
	return true;
}

/* One path component of a repository name: [a-z0-9]+ joined by separators, each '.', '_', '__'
 * or a run of '-', and each followed by [a-z0-9] again (the distribution reference grammar). */
static bool component_valid(const char *s, size_t n)
{
	size_t i = 0;
	for (;;) {
		size_t start = i;
		while (i < n && (islower((unsigned char)s[i]) || isdigit((unsigned char)s[i])))
			i++;
		if (i == start)
			return false;
		if (i == n)
			return true;
		if (s[i] == '.')
			i++;
		else if (s[i] == '_')
			i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
		else if (s[i] == '-')
			while (i < n && s[i] == '-')
				i++;
		else
			return false;
	}
}

/* Registry host: DNS labels ([A-Za-z0-9] runs joined by '-' inside a label) separated by '.',
 * then an optional :port. Upper case is allowed there, as docker allows it. */
static bool host_valid(const char *s, size_t n)
{
	const char *colon = memchr(s, ':', n);
	size_t hl = colon ? (size_t)(colon - s) : n;
	if (hl == 0)
		return false;
	for (size_t i = 0; i < hl;) {
		size_t start = i;
		while (i < hl && (isalnum((unsigned char)s[i]) || s[i] == '-'))
			i++;
		if (i == start || s[start] == '-' || s[i - 1] == '-')
			return false;
		if (i < hl) {
			if (s[i] != '.' || i + 1 == hl)
				return false;
			i++;
		}
	}
	if (colon) {
		if (hl + 1 == n)
			return false;
		for (size_t j = hl + 1; j < n; j++)
			if (!isdigit((unsigned char)s[j]))
				return false;
	}
	return true;
}

/* Splits off and checks "@sha256:<hex>" and ":tag"; leaves the name in buf. */
static bool split_tag_digest(char *buf)
{
	char *digest = strchr(buf, '@');
	if (digest) {
		*digest++ = '\0';
		if (strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 7 + 64 ||
		    !is_hex(digest + 7, 64))
			return false;
	}
	/* A tag is after the last ':' that comes after the last '/'. */
	char *slash = strrchr(buf, '/');
	char *colon = strrchr(slash ? slash : buf, ':');
	if (colon) {
		*colon++ = '\0';
		size_t tl = strlen(colon);
		if (tl == 0 || tl > 128 || !(isalnum((unsigned char)colon[0]) || colon[0] == '_'))
			return false;
		for (size_t i = 0; i < tl; i++)
			if (!isalnum((unsigned char)colon[i]) && !strchr("_.-", colon[i]))
				return false;
	}
	return true;
}

/* [host[:port]/]component[/component...] */
static bool name_valid(const char *p)
{
	if (p[0] == '\0' || strlen(p) > 255)
		return false;
	bool first = true;
	for (;;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		bool hostlike = first && end &&
				(memchr(p, '.', n) || memchr(p, ':', n) ||
				 (n == 9 && strncmp(p, "localhost", 9) == 0));
		if (hostlike ? !host_valid(p, n) : !component_valid(p, n))
			return false;
		if (!end)
			return true;
		p = end + 1;
		first = false;
	}
}

bool ud_reference_valid(const char *ref)
{
	if (!ref)
		return false;
	size_t len = strlen(ref);
	/* 255 is docker's limit on the name alone; a tag (128) and a digest (71) come on top. */
	if (len == 0 || len > 255 + 1 + 128 + 71)
		return false;

	/* A bare id ("sha256:<hex>") or an id prefix. */
	if (strncmp(ref, "sha256:", 7) == 0)
		return len > 7 && len <= 7 + 64 && is_hex(ref + 7, len - 7);

	char buf[255 + 1 + 128 + 71 + 1];
	memcpy(buf, ref, len + 1);
	return split_tag_digest(buf) && name_valid(buf);
}

bool ud_reference_parse(const char *ref, struct ud_ref_parts *p)
{
	memset(p, 0, sizeof(*p));
	size_t len = ref ? strlen(ref) : 0;
	if (!ud_reference_valid(ref) || strncmp(ref, "sha256:", 7) == 0 ||
	    (len == 64 && is_hex(ref, 64)))
		return false;
	char buf[255 + 1 + 128 + 71 + 1];
	memcpy(buf, ref, len + 1);
	char *at = strchr(buf, '@');
	if (at) {
		*at = '\0';
		snprintf(p->digest, sizeof(p->digest), "%s", at + 1);
	}
	char *slash = strrchr(buf, '/');
	char *colon = strrchr(slash ? slash : buf, ':');
	if (colon) {
		*colon = '\0';
		if (!at)
			snprintf(p->tag, sizeof(p->tag), "%s", colon + 1);
	} else if (!at) {
		snprintf(p->tag, sizeof(p->tag), "latest");
	}
	size_t nl = strlen(buf);
	if (nl >= sizeof(p->name))
		return false;
	memcpy(p->name, buf, nl + 1);
	/* The first component is a registry when it looks like a host (as the docker CLI decides). */
	char *first = strchr(buf, '/');
	size_t n = first ? (size_t)(first - buf) : 0;
	bool host = first && (memchr(buf, '.', n) || memchr(buf, ':', n) ||
			      (n == 9 && strncmp(buf, "localhost", 9) == 0));
	if (host && !(n == 15 && strncmp(buf, "index.docker.io", 15) == 0))
		snprintf(p->domain, sizeof(p->domain), "%.*s", (int)n, buf);
	else
		snprintf(p->domain, sizeof(p->domain), "docker.io");
	return true;
}

const char *ud_reference_registry_key(const char *domain)
{
	return strcmp(domain, "docker.io") == 0 ? "https://index.docker.io/v1/" : domain;
}

int ud_api_version_cmp(const char *a, const char *b)
{
	while (*a || *b) {
		char *ea, *eb;
		unsigned long x = strtoul(a, &ea, 10), y = strtoul(b, &eb, 10);
		if (x != y)
			return x < y ? -1 : 1;
		a = *ea == '.' ? ea + 1 : ea;
		b = *eb == '.' ? eb + 1 : eb;
		if (ea == a && eb == b && !*ea && !*eb)
			break;
		if (*ea && *ea != '.')
			break;
		if (*eb && *eb != '.')
			break;
	}
	return 0;
}

bool ud_api_version_valid(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 10)
		return false;
	const char *dot = strchr(v, '.');
	if (!dot || dot == v || !dot[1] || strchr(dot + 1, '.'))
		return false;
	for (const char *p = v; *p; p++)
		if (!isdigit((unsigned char)*p) && *p != '.')
			return false;
	return true;
}
