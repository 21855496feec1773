/* The `students:` list: each student's layers and training (the teacher's
 * keys), its seeds and its distillation settings, with hint layers checked
 * against both networks before anything runs. */
#include <string.h>

#include "internal.h"

#define MAX_CLASSES 256 /* student/distill.c's limit */

/* The shape of the output of layer `name` in a model built from m, with
 * checks that a hint can be taken there.  Returns 0, or KD_ECONFIG at at. */
static int hint_layer(cfg_ctx *c, const cfg_node *at, const char *path, const cfg_data *d,
                      const cfg_model *m, const char *name, nn_shape *out)
{
    kd_err local;
    nn_model *nm = nn_model_new_shapes(d->shape, m->layers, m->nlayers, NULL, &local);
    if (!nm)
        return local.code == KD_ENOMEM ? cfg_nomem(c) : cfg_err(c, at, path, "%s", local.msg);
    int i = nn_model_find(nm, name), rc = KD_OK;
    char why[160];
    if (i < 0)
        rc = cfg_err(c, at, path, "no layer is named \"%s\"", name);
    else if (i == nm->nlayers - 1)
        rc = cfg_err(c, at, path, "\"%s\" gives the logits; hints match intermediate layers",
                     name);
    else if (nn_model_tap_check(nm, i, why, sizeof why) != KD_OK)
        rc = cfg_err(c, at, path, "%s", why);
    else
        *out = nm->layers[i].out;
    nn_model_free(nm);
    return rc;
}

/* distill.hint: {student: LAYER, teacher: LAYER, weight: W} */
static int walk_hint(cfg_ctx *c, const cfg_node *dm, const char *dpath, const exp_spec *s,
                     cfg_student *st)
{
    static const char *const keys[] = {"student", "teacher", "weight", NULL};
    const cfg_node *m;
    char path[128];
    cfg_path(path, sizeof path, dpath, "hint");
    int rc = cfg_section(c, dm, dpath, "hint", 0, &m);
    if (rc != KD_OK || !m || (rc = cfg_check_keys(c, m, path, keys, NULL)) != KD_OK)
        return rc;
    cfg_hint *h = &st->hint;
    h->weight = 1.0f;
    h->pos = cfg_key_pos(dm, "hint");
    if ((rc = cfg_str(c, m, path, "student", 1, h->student, sizeof h->student)) ||
        (rc = cfg_str(c, m, path, "teacher", 1, h->teacher, sizeof h->teacher)) ||
        (rc = cfg_float(c, m, path, "weight", 0, (cfg_range){0, 1000, 1, 0}, &h->weight)))
        return rc;
    const cfg_node *tv = cfg_map_get(m, "teacher"), *sv = cfg_map_get(m, "student");
    h->teacher_pos = (cfg_pos){tv->line, tv->col};
    char p[160];
    nn_shape ss, ts;
    if ((rc = hint_layer(c, sv, cfg_path(p, sizeof p, path, "student"), &s->data, &st->model,
                         h->student, &ss)) != KD_OK)
        return rc;
    if (s->teacher.model_path[0])
        return KD_OK; /* the saved teacher's layers are checked when it is loaded */
    if ((rc = hint_layer(c, tv, cfg_path(p, sizeof p, path, "teacher"), &s->data, &s->teacher,
                         h->teacher, &ts)) != KD_OK)
        return rc;
    kd_err local;
    nn_layer_spec a;
    if (nn_adapter_spec(ss, ts, &a, &local) != KD_OK)
        return cfg_err(c, m, path, "%s", local.msg);
    return KD_OK;
}

static int walk_distill(cfg_ctx *c, const cfg_node *sm, const char *spath, const exp_spec *s,
                        cfg_student *st)
{
    static const char *const keys[] = {"method", "temperature", "alpha", "beta", "gamma",
                                       "warmup", "standardize", "modes", "hint", NULL};
    const cfg_node *m;
    char path[96];
    cfg_path(path, sizeof path, spath, "distill");
    int rc = cfg_section(c, sm, spath, "distill", 0, &m);
    if (rc == KD_OK && m)
        rc = cfg_check_keys(c, m, path, keys, NULL);
    if (rc != KD_OK || (rc = cfg_walk_distill_modes(c, m, path, st)) != KD_OK || !m)
        return rc;
    return walk_hint(c, m, path, s, st);
}

/* Distillation matches the student's logits to the teacher's, one for one
 * (a saved teacher's count is checked against its file by pipeline/check.c). */
static int check_outputs(cfg_ctx *c, const cfg_node *it, const char *path, const exp_spec *s,
                         const cfg_model *m)
{
    const cfg_node *last = cfg_map_get(it, "layers");
    char p[96];
    snprintf(p, sizeof p, "%s.layers[%d]", path, m->nlayers - 1);
    last = last->kid[m->nlayers - 1];
    if (m->nclasses > MAX_CLASSES)
        return cfg_err(c, last, p, "the model ends with %d outputs; distillation takes at most %d",
                       m->nclasses, MAX_CLASSES);
    if (!s->teacher.model_path[0] && m->nclasses != s->teacher.nclasses)
        return cfg_err(c, last, p,
                       "the model ends with %d outputs but the teacher's ends with %d "
                       "(distillation matches them one for one)",
                       m->nclasses, s->teacher.nclasses);
    return KD_OK;
}

/* `teacher: NAME`: a student defined above this one teaches it (Mirzadeh et
 * al.'s teacher assistant); naming itself, a later or an unknown student is
 * an error, so a chain runs in file order and cannot form a cycle. */
static int walk_assistant(cfg_ctx *c, const cfg_node *all, const cfg_node *it, const char *path,
                          exp_spec *s, int i)
{
    cfg_student *st = &s->students[i];
    st->teacher_student = -1;
    const cfg_node *v = cfg_map_get(it, "teacher");
    if (!v)
        return KD_OK;
    char name[64] = "", p[96];
    int rc = cfg_str(c, it, path, "teacher", 0, name, sizeof name);
    if (rc != KD_OK)
        return rc;
    cfg_path(p, sizeof p, path, "teacher");
    st->teacher_pos = (cfg_pos){v->line, v->col};
    if (!strcmp(name, st->name))
        return cfg_err(c, v, p, "\"%s\" names this student itself; name a student above it",
                       name);
    const char *names[CFG_MAX_STUDENTS];
    for (int j = 0; j < i; j++) {
        names[j] = s->students[j].name;
        if (!strcmp(name, names[j])) {
            if (st->hint.student[0])
                return cfg_err(c, v, p, "a student teacher cannot be used with distill.hint "
                               "(hint layers name the experiment's teacher)");
            st->teacher_student = j;
            return KD_OK;
        }
    }
    for (int j = i + 1; j < all->n; j++) {
        const cfg_node *nv = all->kid[j]->kind == CFG_MAP ? cfg_map_get(all->kid[j], "name") : NULL;
        if (nv && nv->kind == CFG_SCALAR && !strcmp(nv->s, name))
            return cfg_err(c, v, p, "\"%s\" is defined later (students[%d]); a teacher "
                           "assistant must come above the students it teaches", name, j);
    }
    const char *sug = cfg_suggest(name, names, i);
    return cfg_err(c, v, p, "no student above is named \"%.64s\"%s%s%s", name,
                   sug ? " (did you mean \"" : "", sug ? sug : "", sug ? "\"?)" : "");
}

static int walk_student(cfg_ctx *c, const cfg_node *all, int i, exp_spec *s)
{
    static const char *const keys[] = {"name", "layers", "train", "seeds", "teacher", "distill",
                                       NULL};
    const cfg_node *it = all->kid[i];
    char path[64];
    snprintf(path, sizeof path, "students[%d]", i);
    if (it->kind != CFG_MAP)
        return cfg_err(c, it, path, "expected a mapping with name, layers, train, distill");
    cfg_student *st = &s->students[i];
    st->pos = it->src < 0 ? (cfg_pos){it->line, it->col} : (cfg_pos){0, 0};
    int rc = cfg_check_keys(c, it, path, keys, "student");
    if (rc != KD_OK || (rc = cfg_str(c, it, path, "name", 1, st->name, sizeof st->name)))
        return rc;
    char p[96];
    const cfg_node *nv = cfg_map_get(it, "name");
    cfg_path(p, sizeof p, path, "name");
    if (!cfg_name_ok(st->name) || !strcmp(st->name, ".") || !strcmp(st->name, ".."))
        return cfg_err(c, nv, p, "\"%.64s\" may use only letters, digits, '_', '.', '-'",
                       st->name);
    for (int j = 0; j < i; j++)
        if (!strcmp(s->students[j].name, st->name))
            return cfg_err(c, nv, p, "\"%s\" is already the name of students[%d]", st->name, j);
    if ((rc = cfg_walk_model(c, it, path, &s->data, &st->model)) ||
        (rc = check_outputs(c, it, path, s, &st->model)) ||
        (rc = cfg_seeds(c, it, path, s->seed, st->seeds, &st->nseeds)))
        return rc;
    if ((rc = walk_distill(c, it, path, s, st)) != KD_OK)
        return rc;
    return walk_assistant(c, all, it, path, s, i);
}

int cfg_walk_students(cfg_ctx *c, const cfg_node *root, exp_spec *s)
{
    const cfg_node *v = cfg_map_get(root, "students");
    if (!v)
        return KD_OK;
    if (v->kind != CFG_SEQ || v->n > CFG_MAX_STUDENTS)
        return cfg_err(c, v, "students", "expected a list of at most %d students",
                       CFG_MAX_STUDENTS);
    for (int i = 0; i < v->n; i++) {
        int rc = walk_student(c, v, i, s);
        if (rc != KD_OK)
            return rc;
        s->nstudents = i + 1;
    }
    return KD_OK;
}
