/*
 * Starts piped commands with posix_spawn(3), off the JavaScript thread.
 *
 * Node.js starts children with fork(2): the kernel copies the page tables of the whole server, and
 * the event loop is blocked until the child has called exec. From a server of 100-150 MiB that
 * costs 1-1.5 ms per command on a small virtual machine, more as the heap grows. glibc's
 * posix_spawn shares the parent's memory until exec (clone with CLONE_VM | CLONE_VFORK), so the
 * cost no longer depends on the server's size; but the calling thread still waits until the child
 * has called exec, which on a busy machine means until the scheduler runs the child. So the
 * spawn runs on the thread that then waits for the child: the event loop never waits for it.
 *
 * spawn(file, argv, env, cwd, pipeStdin, onEvent) returns undefined once that thread is started, or a
 * negative errno when it could not be created. onEvent is then called on the JS thread, in order:
 * onEvent(0, pid, stdinFd, stdoutFd, stderrFd) once started, or onEvent(1, errno) when it could not
 * start; after a start, onEvent(2, exitCode, signal) once it ended (exitCode is -1 when a signal
 * ended it). The child gets a new session (it leads its own process group), every signal at its
 * default disposition and an empty signal mask, as libuv's children do; stdin is /dev/null unless
 * pipeStdin. The callback owns the pipe ends it is given (stdinFd is -1 without a pipe).
 *
 * spawnPty(file, argv, env, cwd, cols, rows, onEvent) starts a command on a new terminal the same
 * way; started is onEvent(0, pid, masterFd, -1, -1). The command's stdin, stdout and stderr are the
 * terminal, which is also its controlling terminal. The master is the caller's: it reads it until
 * the kernel answers EIO (every holder of the terminal has closed it), so output the command wrote
 * just before it exited is read in full; node-pty instead closes the master 200 ms after the exit,
 * losing what a loaded event loop had not read by then.
 *
 * setPipeSize(fd, bytes) asks the kernel to give the pipe `fd` (an output pipe end the caller owns)
 * a capacity of `bytes` (F_SETPIPE_SZ) and returns the capacity it now has, or a negative errno. A
 * command writing fast then fills more before it blocks, and each read takes more at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* What onEvent is told: its first argument, then up to four numbers. */
enum { EVENT_STARTED = 0, EVENT_FAILED = 1, EVENT_EXITED = 2 };

typedef struct {
  int kind;
  int count;
  int values[4];
} event_t;

/* One command: what to start (copied from JS), then the thread that starts and waits for it. */
typedef struct {
  char *file;
  char **argv;
  char **envp;
  char *cwd;
  bool pipe_stdin;
  /* On a terminal of this size (tty) instead of pipes. */
  bool tty;
  int cols;
  int rows;
  napi_threadsafe_function on_event;
} child_t;

static void free_strings(char **strings);

static void free_child(child_t *child) {
  free(child->file);
  free_strings(child->argv);
  free_strings(child->envp);
  free(child->cwd);
  free(child);
}

static void call_on_event(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  event_t *event = data;
  if (env != NULL && callback != NULL) {
    napi_value args[5];
    napi_value recv;
    napi_create_int32(env, event->kind, &args[0]);
    for (int i = 0; i < event->count; i++) napi_create_int32(env, event->values[i], &args[i + 1]);
    napi_get_undefined(env, &recv);
    napi_call_function(env, recv, callback, (size_t)event->count + 1, args, NULL);
  }
  free(event);
}

/* Queues onEvent(kind, values...); false when the event could not be queued (its fds are then closed by the caller). */
static bool send_event(napi_threadsafe_function on_event, int kind, int count, const int values[]) {
  event_t *event = calloc(1, sizeof(event_t));
  if (event == NULL) return false;
  event->kind = kind;
  event->count = count;
  for (int i = 0; i < count; i++) event->values[i] = values[i];
  if (napi_call_threadsafe_function(on_event, event, napi_tsfn_blocking) != napi_ok) {
    free(event);
    return false;
  }
  return true;
}

static int start(const char *file, char **argv, char **envp, const char *cwd, bool pipe_stdin, pid_t *pid, int fds[3]);
static int start_pty(const child_t *child, pid_t *pid, int fds[3]);

static void *run_child(void *arg) {
  child_t *child = arg;
  napi_threadsafe_function on_event = child->on_event;
  pid_t pid = 0;
  int fds[3] = {-1, -1, -1};
  int error = child->tty ? start_pty(child, &pid, fds) : start(child->file, child->argv, child->envp, child->cwd, child->pipe_stdin, &pid, fds);
  free_child(child);
  if (error != 0) {
    send_event(on_event, EVENT_FAILED, 1, &error);
  } else {
    int started[4] = {pid, fds[0], fds[1], fds[2]};
    if (!send_event(on_event, EVENT_STARTED, 4, started)) {
      /* Nobody will read its pipes or hear of it: close them; it is still reaped below. */
      for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0) close(fds[i]);
      }
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    int exited[2] = {WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0};
    send_event(on_event, EVENT_EXITED, 2, exited);
  }
  napi_release_threadsafe_function(on_event, napi_tsfn_release);
  return NULL;
}

/* A JS string as a malloc'ed C string; NULL if it is not a string. */
static char *c_string(napi_env env, napi_value value) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) return NULL;
  char *text = malloc(length + 1);
  if (text == NULL) return NULL;
  napi_get_value_string_utf8(env, value, text, length + 1, &length);
  return text;
}

static void free_strings(char **strings) {
  if (strings == NULL) return;
  for (char **each = strings; *each != NULL; each++) free(*each);
  free(strings);
}

/* A JS array of strings as a NULL-terminated malloc'ed array; NULL on any failure. */
static char **c_strings(napi_env env, napi_value value) {
  uint32_t count = 0;
  if (napi_get_array_length(env, value, &count) != napi_ok) return NULL;
  char **strings = calloc((size_t)count + 1, sizeof(char *));
  if (strings == NULL) return NULL;
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    if (napi_get_element(env, value, i, &element) != napi_ok || (strings[i] = c_string(env, element)) == NULL) {
      free_strings(strings);
      return NULL;
    }
  }
  return strings;
}

static napi_value int_value(napi_env env, int number) {
  napi_value value;
  napi_create_int32(env, number, &value);
  return value;
}

static void close_pair(int pair[2]) {
  if (pair[0] >= 0) close(pair[0]);
  if (pair[1] >= 0) close(pair[1]);
}

/*
 * Every signal to its default disposition, the C library's own (32 up to SIGRTMIN) included:
 * sigfillset leaves those out, and posix_spawn then sets them to SIG_IGN in the child, which exec
 * keeps. They are set in the raw bits, as the kernel and the C library lay them out.
 */
static void all_signals(sigset_t *set) {
  enum { WORD_BITS = 8 * sizeof(unsigned long) };
  unsigned long words[sizeof(sigset_t) / sizeof(unsigned long)];
  sigfillset(set);
  memcpy(words, set, sizeof(words));
  for (int sig = 32; sig < SIGRTMIN; sig++) words[(sig - 1) / WORD_BITS] |= 1UL << ((sig - 1) % WORD_BITS);
  memcpy(set, words, sizeof(words));
}

/* A new session, every signal at its default disposition, nothing blocked. */
static void init_attributes(posix_spawnattr_t *attributes) {
  sigset_t all, none;
  all_signals(&all);
  sigemptyset(&none);
  posix_spawnattr_init(attributes);
  posix_spawnattr_setsigdefault(attributes, &all);
  posix_spawnattr_setsigmask(attributes, &none);
  posix_spawnattr_setflags(attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSID);
}

static int start(const char *file, char **argv, char **envp, const char *cwd, bool pipe_stdin, pid_t *pid, int fds[3]) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if ((pipe_stdin && pipe2(in, O_CLOEXEC) != 0) || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    int error = errno;
    close_pair(in);
    close_pair(out);
    close_pair(err);
    return error;
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  posix_spawn_file_actions_init(&actions);
  init_attributes(&attributes);
  if (pipe_stdin) posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  else posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawn_file_actions_addchdir_np(&actions, cwd);
  int error = posix_spawn(pid, file, &actions, &attributes, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (in[0] >= 0) close(in[0]);
  close(out[1]);
  close(err[1]);
  if (error != 0) {
    if (in[1] >= 0) close(in[1]);
    close(out[0]);
    close(err[0]);
    return error;
  }
  fds[0] = in[1];
  fds[1] = out[0];
  fds[2] = err[0];
  return 0;
}

/*
 * A new terminal pair; the child opens the terminal as its stdin (POSIX_SPAWN_SETSID runs before
 * the file actions, and a session leader without a controlling terminal that opens one without
 * O_NOCTTY acquires it), then makes it its stdout and stderr. The master is non-blocking, as
 * libuv reads it, and close-on-exec, so no other command inherits it.
 */
static int start_pty(const child_t *child, pid_t *pid, int fds[3]) {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return errno;
  char terminal[128];
  struct winsize size = {.ws_row = (unsigned short)child->rows, .ws_col = (unsigned short)child->cols};
  int error = 0;
  if (grantpt(master) != 0 || unlockpt(master) != 0 || ioctl(master, TIOCSWINSZ, &size) != 0) error = errno;
  else error = ptsname_r(master, terminal, sizeof(terminal));
  if (error == 0) {
    int flags = fcntl(master, F_GETFL);
    if (flags < 0 || fcntl(master, F_SETFL, flags | O_NONBLOCK) != 0) error = errno;
  }
  if (error != 0) {
    close(master);
    return error;
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  posix_spawn_file_actions_init(&actions);
  init_attributes(&attributes);
  posix_spawn_file_actions_addopen(&actions, 0, terminal, O_RDWR, 0);
  posix_spawn_file_actions_adddup2(&actions, 0, 1);
  posix_spawn_file_actions_adddup2(&actions, 0, 2);
  posix_spawn_file_actions_addchdir_np(&actions, child->cwd);
  error = posix_spawn(pid, child->file, &actions, &attributes, child->argv, child->envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) {
    close(master);
    return error;
  }
  fds[0] = master;
  return 0;
}

/*
 * The two entry points take the same arguments around different options: file, argv, env and cwd
 * first, onEvent last, and between them spawn's pipeStdin or spawnPty's cols and rows.
 */
typedef struct {
  const char *name;
  /* The TypeError of a call with the wrong number of arguments. */
  const char *usage;
  size_t count;
  bool tty;
} entry_t;

enum { MOST_ARGUMENTS = 7 };
static const entry_t SPAWN = {"spawn", "spawn(file, argv, env, cwd, pipeStdin, onEvent) takes six arguments", 6, false};
static const entry_t SPAWN_PTY = {"spawnPty", "spawnPty(file, argv, env, cwd, cols, rows, onEvent) takes seven arguments", 7, true};

/* The options between cwd and onEvent into child; false, with a RangeError thrown, when out of range. */
static bool read_options(napi_env env, const napi_value options[], child_t *child) {
  if (!child->tty) {
    /* Anything but true leaves stdin on /dev/null. */
    napi_get_value_bool(env, options[0], &child->pipe_stdin);
    return true;
  }
  if (napi_get_value_int32(env, options[0], &child->cols) != napi_ok || napi_get_value_int32(env, options[1], &child->rows) != napi_ok || child->cols < 1 ||
      child->rows < 1 || child->cols > 0xffff || child->rows > 0xffff) {
    napi_throw_range_error(env, NULL, "spawnPty: cols and rows must be integers from 1 to 65535");
    return false;
  }
  return true;
}

/* Starts the thread that starts the child and waits for it; the thread owns the child from then on. */
static napi_value start_thread(napi_env env, child_t *child) {
  napi_threadsafe_function on_event = child->on_event;
  pthread_attr_t attributes;
  pthread_t thread;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attributes, 64 * 1024);
  int error = pthread_create(&thread, &attributes, run_child, child);
  pthread_attr_destroy(&attributes);
  if (error != 0) {
    free_child(child);
    napi_release_threadsafe_function(on_event, napi_tsfn_release);
    return int_value(env, -error);
  }
  napi_value result;
  napi_get_undefined(env, &result);
  return result;
}

/*
 * Reads a call of either entry point into a new child, copying what it starts out of JS, and starts
 * its thread. Answers undefined once that thread runs, a negative errno when it could not be
 * created (or memory ran out), or throws on a wrong call.
 */
static napi_value start_command(napi_env env, napi_callback_info info, const entry_t *entry) {
  size_t argc = MOST_ARGUMENTS;
  napi_value args[MOST_ARGUMENTS];
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != entry->count) {
    napi_throw_type_error(env, NULL, entry->usage);
    return NULL;
  }
  child_t *child = calloc(1, sizeof(child_t));
  if (child == NULL) return int_value(env, -ENOMEM);
  child->tty = entry->tty;
  if (!read_options(env, &args[4], child)) {
    free_child(child);
    return NULL;
  }
  char message[128];
  child->file = c_string(env, args[0]);
  child->argv = c_strings(env, args[1]);
  child->envp = c_strings(env, args[2]);
  child->cwd = c_string(env, args[3]);
  if (child->file == NULL || child->argv == NULL || child->envp == NULL || child->cwd == NULL) {
    free_child(child);
    snprintf(message, sizeof(message), "%s: file, argv, env and cwd must be strings", entry->name);
    napi_throw_type_error(env, NULL, message);
    return NULL;
  }
  napi_value name;
  napi_create_string_utf8(env, "codex-multienv spawn", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, args[entry->count - 1], NULL, name, 0, 1, NULL, NULL, NULL, call_on_event, &child->on_event) != napi_ok) {
    free_child(child);
    snprintf(message, sizeof(message), "%s: onEvent must be a function", entry->name);
    napi_throw_type_error(env, NULL, message);
    return NULL;
  }
  return start_thread(env, child);
}

static napi_value Spawn(napi_env env, napi_callback_info info) {
  return start_command(env, info, &SPAWN);
}

static napi_value SpawnPty(napi_env env, napi_callback_info info) {
  return start_command(env, info, &SPAWN_PTY);
}

static napi_value SetPipeSize(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  int32_t fd, bytes;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 2 || napi_get_value_int32(env, args[0], &fd) != napi_ok ||
      napi_get_value_int32(env, args[1], &bytes) != napi_ok || fd < 0 || bytes < 1) {
    napi_throw_type_error(env, NULL, "setPipeSize(fd, bytes) takes a file descriptor and a positive size");
    return NULL;
  }
  int size = fcntl(fd, F_SETPIPE_SZ, bytes);
  return int_value(env, size < 0 ? -errno : size);
}

NAPI_MODULE_INIT() {
  napi_value spawn;
  napi_create_function(env, "spawn", NAPI_AUTO_LENGTH, Spawn, NULL, &spawn);
  napi_set_named_property(env, exports, "spawn", spawn);
  napi_value spawn_pty;
  napi_create_function(env, "spawnPty", NAPI_AUTO_LENGTH, SpawnPty, NULL, &spawn_pty);
  napi_set_named_property(env, exports, "spawnPty", spawn_pty);
  napi_value set_pipe_size;
  napi_create_function(env, "setPipeSize", NAPI_AUTO_LENGTH, SetPipeSize, NULL, &set_pipe_size);
  napi_set_named_property(env, exports, "setPipeSize", set_pipe_size);
  return exports;
}
