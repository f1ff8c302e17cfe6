/*
 * Starts piped commands with posix_spawn(3).
 *
 * Node.js starts children with fork(2): the kernel copies the page tables of the whole server, and
 * the event loop is blocked until the child has called exec. From a server of 100-150 MiB that
 * costs 1-1.5 ms per command on a small virtual machine, more as the heap grows. glibc's
 * posix_spawn shares the parent's memory until exec (clone with CLONE_VM | CLONE_VFORK), so the
 * cost no longer depends on the server's size.
 *
 * spawn(file, argv, env, cwd, pipeStdin, onExit) -> [pid, stdinFd, stdoutFd, stderrFd] or a
 * negative errno. The child gets a new session (it leads its own process group), every signal
 * at its default disposition and an empty signal mask, as libuv's children do; stdin is
 * /dev/null unless pipeStdin. The caller owns the returned pipe ends (stdinFd is -1 without a
 * pipe). A thread per child waits for it and calls onExit(exitCode, signal) on the JS thread:
 * exitCode is -1 when a signal ended it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
  pid_t pid;
  int status;
  napi_threadsafe_function on_exit;
} child_t;

static void *wait_for_child(void *arg) {
  child_t *child = arg;
  int status = 0;
  while (waitpid(child->pid, &status, 0) < 0 && errno == EINTR) {
  }
  child->status = status;
  /* call_on_exit frees child, perhaps before this thread runs again: keep the function. */
  napi_threadsafe_function on_exit = child->on_exit;
  if (napi_call_threadsafe_function(on_exit, child, napi_tsfn_blocking) != napi_ok) free(child);
  napi_release_threadsafe_function(on_exit, napi_tsfn_release);
  return NULL;
}

static void call_on_exit(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  child_t *child = data;
  if (env != NULL && callback != NULL) {
    napi_value args[2];
    napi_value recv;
    int status = child->status;
    napi_create_int32(env, WIFEXITED(status) ? WEXITSTATUS(status) : -1, &args[0]);
    napi_create_int32(env, WIFSIGNALED(status) ? WTERMSIG(status) : 0, &args[1]);
    napi_get_undefined(env, &recv);
    napi_call_function(env, recv, callback, 2, args, NULL);
  }
  free(child);
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
  sigset_t all, none;
  all_signals(&all);
  sigemptyset(&none);
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attributes);
  if (pipe_stdin) posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  else posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawn_file_actions_addchdir_np(&actions, cwd);
  posix_spawnattr_setsigdefault(&attributes, &all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSID);
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

static napi_value Spawn(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value args[6];
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 6) {
    napi_throw_type_error(env, NULL, "spawn(file, argv, env, cwd, pipeStdin, onExit) takes six arguments");
    return NULL;
  }
  bool pipe_stdin = false;
  napi_get_value_bool(env, args[4], &pipe_stdin);
  char *file = c_string(env, args[0]);
  char **argv = c_strings(env, args[1]);
  char **envp = c_strings(env, args[2]);
  char *cwd = c_string(env, args[3]);
  child_t *child = calloc(1, sizeof(child_t));
  napi_value result = NULL;
  if (file == NULL || argv == NULL || envp == NULL || cwd == NULL || child == NULL) {
    napi_throw_type_error(env, NULL, "spawn: file, argv, env and cwd must be strings");
    goto done;
  }
  napi_value name;
  napi_create_string_utf8(env, "codex-multienv spawn", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, args[5], NULL, name, 0, 1, NULL, NULL, NULL, call_on_exit, &child->on_exit) != napi_ok) {
    napi_throw_type_error(env, NULL, "spawn: onExit must be a function");
    goto done;
  }
  int fds[3] = {-1, -1, -1};
  int error = start(file, argv, envp, cwd, pipe_stdin, &child->pid, fds);
  if (error == 0) {
    pthread_attr_t attributes;
    pthread_t thread;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    error = pthread_create(&thread, &attributes, wait_for_child, child);
    pthread_attr_destroy(&attributes);
    if (error != 0) {
      /* Without a waiter nobody would reap or report the child: stop it and report the error. */
      kill(-child->pid, SIGKILL);
      while (waitpid(child->pid, NULL, 0) < 0 && errno == EINTR) {
      }
      for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0) close(fds[i]);
      }
    }
  }
  if (error != 0) {
    napi_release_threadsafe_function(child->on_exit, napi_tsfn_release);
    result = int_value(env, -error);
    goto done;
  }
  napi_create_array_with_length(env, 4, &result);
  napi_set_element(env, result, 0, int_value(env, child->pid));
  for (int i = 0; i < 3; i++) napi_set_element(env, result, (uint32_t)i + 1, int_value(env, fds[i]));
  child = NULL; /* Owned by its waiter thread now. */
done:
  free(file);
  free_strings(argv);
  free_strings(envp);
  free(cwd);
  free(child);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value spawn;
  napi_create_function(env, "spawn", NAPI_AUTO_LENGTH, Spawn, NULL, &spawn);
  napi_set_named_property(env, exports, "spawn", spawn);
  return exports;
}
