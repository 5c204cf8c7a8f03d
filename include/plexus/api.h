/**
 * @file
 * plexus — what marks the library's interface.
 *
 * libplexus is built with hidden visibility and a version script: only the
 * declarations marked PX_API (all of them px_ names) are exported, so an
 * application's own symbols never collide with plexus's internals. */
#ifndef PLEXUS_API_H
#define PLEXUS_API_H

#if defined(__GNUC__) || defined(__clang__)
/** Marks a declaration the library exports (default visibility). */
#define PX_API __attribute__((visibility("default")))
#else
/** Marks a declaration the library exports (nothing to say on this compiler). */
#define PX_API
#endif

#endif
