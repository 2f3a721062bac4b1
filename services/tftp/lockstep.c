/* The TFTP lock-step pump, compiled: the one loop of the server that runs per block.
 *
 * Same contract as engine.ReadTransfer.run_lockstep, which stays the reference and
 * the fallback: a transfer process (forked.py) that sent block `index` of its batch
 * waits in recv for that block's ACK and answers each in-order ACK with the next
 * packet of the batch. It stops at the first datagram that is anything else, and at
 * the ACK of the batch's last packet (the engine reads the next batch), leaving that
 * datagram in `buf`. The engine keeps all the state: this only moves packets.
 *
 * Why C: with 32 lock-step clients on 2 cores the server's work per block is two
 * system calls, and the Python around them (about 30 bytecodes a block) was what
 * separated us from tftpd-hpa. Built by setup.sh; loaded with ctypes by native.py.
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

/* batch:  `count` packets (header + payload), `slot` bytes apart; the last is `tail` long.
 * index:  the packet sent and awaited; block: its 16-bit block number.
 * Returns the length of the datagram left in buf, or -errno when recv or send failed
 * (-EAGAIN: SO_RCVTIMEO ran out, the timer is due; -EINTR: a signal, SIGTERM aborts).
 * Each packet sent is added to *sent (the caller takes and zeroes it); one whose send
 * failed counts, as in the Python pump: the timer resends it. */
long si_tftp_lockstep(int fd, const unsigned char *batch, long slot, long count, long tail,
                      long index, unsigned int block, unsigned char *buf, long size, long *sent)
{
    for (;;) {
        ssize_t n = recv(fd, buf, (size_t)size, 0);
        if (n < 0)
            return -errno;
        if (n != 4 || buf[0] != 0 || buf[1] != 4 || buf[2] != ((block >> 8) & 255)
                || buf[3] != (block & 255) || index >= count - 1)
            return n;
        index++;
        ++*sent;
        block = (block + 1) & 0xFFFF;
        if (send(fd, batch + index * slot, (size_t)(index == count - 1 ? tail : slot), 0) < 0)
            return -errno;
    }
}
