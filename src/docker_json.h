/* The Engine API's JSON answers, parsed and checked: pure, no daemon and no libcurl, so captured
 * answers are unit-tested and fuzzed. The transport (docker.c) hands over bytes and a length. */
#ifndef UD_DOCKER_JSON_H
#define UD_DOCKER_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define UD_MAX_LAYERS 500 /* overlayfs's limit on lower layers */

/* What the helper needs to know about one image. Layers are ordered top (newest) to bottom. */
struct ud_image {
	char *ref;            /* as the user wrote it */
	char *id;             /* "sha256:..." */
	char *driver;         /* GraphDriver.Name: "overlay2" (Docker) or "overlay" (Podman) */
	char *storage_root;   /* derived: the directory that holds the layer dirs and l/ */
	char **layers;        /* absolute ".../diff" directories, top to bottom */
	size_t n_layers;
	char **diff_ids;      /* RootFS.Layers, bottom to top as the API lists them */
	size_t n_diff_ids;
	char **env;           /* Config.Env, "KEY=VALUE" */
	size_t n_env;
	char *workdir;        /* Config.WorkingDir, "" if unset */
	char **repo_digests;  /* RepoDigests, "name@sha256:..." (pulled or pushed images) */
	size_t n_repo_digests;
	char *user;           /* Config.User, "" if unset: untrusted, checked when resolved */
	bool from_cache;      /* layers are ours (a layer cache), not the daemon's dirs */
	bool snapshot;        /* ... hard links of the daemon's dirs (snapshot.h), not an export */
};

void ud_image_free(struct ud_image *img);

/* Parses an image inspect answer (status already 200). The string arrays stay NULL-terminated. */
int ud_parse_inspect(const char *json, size_t len, const char *ref, struct ud_image *img,
		     ud_error *e);

/* overlay2 (Docker) or overlay (Podman): the drivers whose layer directories we can stack. */
bool ud_overlay_driver(const char *driver);

/* Checks the layer stack of a parsed image: supported driver, each path absolute, free of
 * ',' ':' '\\', of the form <root>/<id>/diff with one common <root>. Sets img->storage_root.
 * Does not touch the filesystem. Messages do not name the image: the caller adds it. */
int ud_validate_layers(struct ud_image *img, ud_error *e);

/* The digest ("sha256:...") of GET /distribution/{name}/json's Descriptor: the manifest the
 * registry serves for the tag now. Into digest (at least 72 bytes). */
int ud_parse_distribution(const char *json, size_t len, char *digest, size_t dlen, ud_error *e);

/* The digest RepoDigests records for repository name (as ud_ref_parts.name has it, compared in
 * the daemon's short form: "docker.io/library/x" is "x"), into out (72 bytes); false if none. */
bool ud_repo_digest(const struct ud_image *img, const char *name, char *out, size_t len);

/* Parses /info into a driver description and DockerRootDir. */
int ud_parse_info(const char *json, size_t len, char **driver_desc, char **root_dir, ud_error *e);

/* Parses /version's ApiVersion (or another version field, e.g. MinAPIVersion). */
int ud_parse_version(const char *json, size_t len, char *api, size_t api_len, ud_error *e);
int ud_parse_version_field(const char *json, size_t len, const char *field, char *api,
			   size_t api_len, ud_error *e);

/* Parses /images/json into the ids of the images (caller frees each and the array). */
int ud_parse_image_list(const char *json, size_t len, char ***ids, size_t *n, ud_error *e);

/* The daemon's {"message": "..."} of an error answer (NUL-terminated body), else the start of the
 * body, else "no message"; sanitised to one line. */
void ud_parse_error_message(const char *body, char *out, size_t len);

#endif
