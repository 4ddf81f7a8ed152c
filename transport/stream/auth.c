/*
 * Cookies and handshake MACs for the stream transports (auth.h), over
 * libsodium: HMAC-SHA256, its random generator, constant-time comparison
 * and wiping.
 */
#include "transport/stream/auth.h"

#include "engine/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int sodium_ready(const char **why)
{
    if (sodium_init() < 0) {
        *why = "libsodium failed to initialise";
        return -EIO;
    }
    return 0;
}

static int home_path(char *buf, size_t len, const char *name, const char **why)
{
    const char *home = getenv("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid(geteuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home || !*home) {
        *why = "no cookie configured, KUMO_COOKIE unset and no home directory for ~/.kumo.cookie";
        return -ENOENT;
    }
    if ((size_t)snprintf(buf, len, "%s/%s", home, name) >= len) {
        *why = "home directory path too long for the cookie file";
        return -ENAMETOOLONG;
    }
    return 0;
}

/* Creates the cookie file unless it exists: written under a temporary
 * name and linked into place, so a reader never sees it half written and
 * two processes racing agree on one cookie. */
static int cookie_create(const char *path, const char **why)
{
    char tmp[4200];
    uint32_t r = randombytes_random();
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.%ld.%08x", path, (long)getpid(), r) >= sizeof tmp) {
        *why = "cookie file path too long";
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
    if (fd < 0) {
        *why = "cannot create ~/.kumo.cookie";
        return -errno;
    }
    char c[20];
    for (size_t i = 0; i < sizeof c; i++)
        c[i] = (char)('A' + randombytes_uniform(26));
    int err = 0;
    if (write(fd, c, sizeof c) != (ssize_t)sizeof c || fsync(fd) != 0) {
        err = errno ? -errno : -EIO;
        *why = "cannot write ~/.kumo.cookie";
    }
    sodium_memzero(c, sizeof c);
    close(fd);
    if (!err && link(tmp, path) != 0 && errno != EEXIST) {
        err = -errno;
        *why = "cannot create ~/.kumo.cookie";
    }
    unlink(tmp);
    return err;
}

static int cookie_read(const char *path, uint8_t **key, size_t *len, const char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        *why = "cannot open ~/.kumo.cookie";
        return -errno;
    }
    struct stat st;
    int err = 0;
    if (fstat(fd, &st) != 0) {
        err = -errno;
        *why = "cannot stat ~/.kumo.cookie";
    } else if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        err = -EACCES;
        *why = "~/.kumo.cookie is not a regular file of this user";
    } else if (st.st_mode & 077) {
        err = -EACCES;
        *why = "~/.kumo.cookie must be accessible by its owner only (chmod 400)";
    }
    uint8_t buf[KUMO__COOKIE_MAX + 1];
    ssize_t n = 0;
    if (!err) {
        n = read(fd, buf, sizeof buf);
        if (n < 0) {
            err = -errno;
            *why = "cannot read ~/.kumo.cookie";
        }
    }
    close(fd);
    while (!err && n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (!err && n == 0) {
        err = -EINVAL;
        *why = "~/.kumo.cookie is empty";
    } else if (!err && n > KUMO__COOKIE_MAX) {
        err = -EINVAL;
        *why = "~/.kumo.cookie is longer than 1024 bytes";
    }
    if (!err) {
        *key = malloc((size_t)n);
        if (!*key) {
            err = -ENOMEM;
            *why = "out of memory";
        } else {
            memcpy(*key, buf, (size_t)n);
            *len = (size_t)n;
        }
    }
    sodium_memzero(buf, sizeof buf);
    return err;
}

static int cookie_copy(const char *s, uint8_t **key, size_t *len, const char **why)
{
    size_t n = strlen(s);
    if (n == 0 || n > KUMO__COOKIE_MAX) {
        *why = "a cookie must be 1 to 1024 bytes";
        return -EINVAL;
    }
    *key = malloc(n);
    if (!*key) {
        *why = "out of memory";
        return -ENOMEM;
    }
    memcpy(*key, s, n);
    *len = n;
    return 0;
}

int kumo__cookie_resolve(const char *configured, uint8_t **key, size_t *len, const char **why)
{
    int err = sodium_ready(why);
    if (err)
        return err;
    if (configured)
        return cookie_copy(configured, key, len, why);
    const char *env = getenv("KUMO_COOKIE");
    if (env && *env)
        return cookie_copy(env, key, len, why);
    char path[4096];
    if ((err = home_path(path, sizeof path, KUMO__COOKIE_FILE, why)))
        return err;
    if (access(path, F_OK) != 0) {
        if ((err = cookie_create(path, why)))
            return err;
        kumo__log(KUMO_LOG_INFO, "created %s with a random cookie", path);
    }
    return cookie_read(path, key, len, why);
}

void kumo__cookie_free(uint8_t *key, size_t len)
{
    if (key) {
        sodium_memzero(key, len);
        free(key);
    }
}

void kumo__auth_nonce(uint8_t out[KUMO__NONCE])
{
    randombytes_buf(out, KUMO__NONCE);
}

void kumo__auth_mac(const uint8_t *key, size_t klen, bool acceptor,
                    const uint8_t nonce_c[KUMO__NONCE], const uint8_t nonce_a[KUMO__NONCE],
                    const kumo_address *connector, const kumo_address *acceptor_addr,
                    uint8_t out[KUMO__MAC])
{
    crypto_auth_hmacsha256_state st;
    uint8_t a[KUMO_ADDRESS_WIRE_MAX];
    crypto_auth_hmacsha256_init(&st, key, klen);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)(acceptor ? "kumo-acc" : "kumo-con"), 8);
    crypto_auth_hmacsha256_update(&st, nonce_c, KUMO__NONCE);
    crypto_auth_hmacsha256_update(&st, nonce_a, KUMO__NONCE);
    crypto_auth_hmacsha256_update(&st, a, kumo_address_encode(connector, a));
    crypto_auth_hmacsha256_update(&st, a, kumo_address_encode(acceptor_addr, a));
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

bool kumo__auth_equal(const uint8_t a[KUMO__MAC], const uint8_t b[KUMO__MAC])
{
    return crypto_verify_32(a, b) == 0;
}
