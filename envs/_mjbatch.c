/* metarl's batched MuJoCo step kernel (see envs/mujoco_physics.py, which compiles and loads it).

   The same loop as BatchedPhysics._step_range in Python, run without the GIL: for every sub-env,
   load its integration state into the worker's scratch mjData, make mj_step frame_skip times (and
   mj_rnePostConstraint when contact forces are read), store the state back and copy the requested
   mjData fields into per-sub-env output rows. Workers take chunks of sub-envs from an atomic
   counter. The calls are the ones the Python loop and Gymnasium make, so results are bit for bit
   the same. */

#include <pthread.h>
#include <stddef.h>

#include <mujoco/mujoco.h>

typedef struct {
  int nenv;
  const mjModel* const* models; /* one per sub-env */
  mjData* const* datas;         /* one scratch mjData per worker */
  mjtNum* state;                /* nenv x nstate */
  int nstate;
  unsigned int spec;
  int nstep;
  int post;
  int nchunk;
  const int* bounds; /* nchunk + 1 */
  int ncopy;
  mjtNum* const* src;      /* nworker x ncopy: the field in each worker's mjData */
  mjtNum* const* dst;      /* ncopy: the (nenv, count) output arrays */
  const long* count;       /* ncopy */
  int next;                /* chunk counter */
} metarl_job;

typedef struct {
  metarl_job* job;
  int worker;
} metarl_arg;

static void* metarl_work(void* p) {
  metarl_arg* a = (metarl_arg*)p;
  metarl_job* job = a->job;
  mjData* d = job->datas[a->worker];
  mjtNum* const* src = job->src + (size_t)a->worker * job->ncopy;
  for (;;) {
    int j = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
    if (j >= job->nchunk) break;
    for (int i = job->bounds[j]; i < job->bounds[j + 1]; i++) {
      const mjModel* m = job->models[i];
      mjtNum* row = job->state + (size_t)i * job->nstate;
      mj_setState(m, d, row, job->spec);
      for (int k = 0; k < job->nstep; k++) mj_step(m, d);
      if (job->post) mj_rnePostConstraint(m, d);
      mj_getState(m, d, row, job->spec);
      for (int c = 0; c < job->ncopy; c++) {
        long n = job->count[c];
        mjtNum* out = job->dst[c] + (size_t)i * n;
        const mjtNum* in = src[c];
        for (long t = 0; t < n; t++) out[t] = in[t];
      }
    }
  }
  return NULL;
}

/* Advance every sub-env; returns 0, or the number of worker threads that could not be started
   (their chunks are then done by the others, so the result is the same). */
int metarl_step_batch(int nenv, const mjModel* const* models, int nworker, mjData* const* datas,
                      mjtNum* state, int nstate, unsigned int spec, int nstep, int post,
                      int nchunk, const int* bounds, int ncopy, mjtNum* const* src,
                      mjtNum* const* dst, const long* count) {
  metarl_job job = {nenv,  models, datas,  state, nstate, spec, nstep, post,
                    nchunk, bounds, ncopy, src,   dst,    count, 0};
  enum { MAXW = 256 };
  pthread_t threads[MAXW];
  metarl_arg args[MAXW];
  int started[MAXW];
  int failed = 0;
  if (nworker > MAXW) nworker = MAXW;
  for (int w = 1; w < nworker; w++) {
    args[w].job = &job;
    args[w].worker = w;
    started[w] = pthread_create(&threads[w], NULL, metarl_work, &args[w]) == 0;
    if (!started[w]) failed++;
  }
  args[0].job = &job;
  args[0].worker = 0;
  metarl_work(&args[0]);
  for (int w = 1; w < nworker; w++) {
    if (started[w]) pthread_join(threads[w], NULL);
  }
  return failed;
}
