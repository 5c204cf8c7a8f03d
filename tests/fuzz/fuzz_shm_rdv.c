/* Fuzz the shm rendezvous: a client's hello (with a memfd of a size and
 * seals the input chooses) and a server's reply. An accepted hello names a
 * segment that is exactly the size its ring needs and that the memfd
 * covers and cannot shrink; a reply is accepted only with our magic and
 * version, and a refusal always comes back as an error. */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "plexus/error.h"
#include "transports/shm/shm.h"
#include "transports/shm/shm_rdv.h"

static void hello(const uint8_t *data, size_t size)
{
    if (size < sizeof(rdv_hello) + 5)
        return;
    rdv_hello h;
    memcpy(&h, data, sizeof(h));
    uint32_t memfd_len;
    memcpy(&memfd_len, data + sizeof(h), 4);
    uint8_t seal = data[sizeof(h) + 4];
    /* Small segments only: the fuzzer should explore fields, not memory. */
    memfd_len %= 4u << 20;
    int fd = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    FUZZ_CHECK(fd >= 0);
    if (ftruncate(fd, memfd_len) != 0) {
        close(fd);
        return;
    }
    if (seal & 1)
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK);
    int rc = shm_rdv_check_hello(&h, fd);
    FUZZ_CHECK(rc == 0 || rc == -PX_EPROTO || rc == -PX_EVERSION);
    if (rc == 0) {
        struct stat st;
        FUZZ_CHECK(fstat(fd, &st) == 0 && (uint64_t)st.st_size >= h.seg_len);
        FUZZ_CHECK(h.seg_len == shm_rdv_seg_len(h.ring_size));
        FUZZ_CHECK(h.ring_size >= SHM_RING_MIN && h.ring_size <= SHM_RING_MAX);
        FUZZ_CHECK((h.ring_size & (h.ring_size - 1)) == 0);
        FUZZ_CHECK(fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK);
    }
    close(fd);
}

static void reply(const uint8_t *data, size_t size)
{
    if (size < sizeof(rdv_reply))
        return;
    rdv_reply r;
    memcpy(&r, data, sizeof(r));
    int rc = shm_rdv_check_reply(&r);
    FUZZ_CHECK(rc <= 0);
    if (rc == 0)
        FUZZ_CHECK(r.magic == SHM_MAGIC && r.version == SHM_VERSION && r.status == 0);
    if (r.status != 0 && r.magic == SHM_MAGIC && r.version == SHM_VERSION)
        FUZZ_CHECK(rc < 0 && strcmp(px_errname(rc), "PX_E?") != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hello(data, size);
    reply(data, size);
    return 0;
}
