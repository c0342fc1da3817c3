// Stochastic gradient descent with torch.optim.SGD's semantics: L2 weight decay
// (WD), momentum with dampening (MOMENTUM), Nesterov's form (NESTEROV).
// Host scalars: sign is -1 when maximizing, else 1; damp is 1 - dampening, but 1 on
// a run's first step, because torch starts the buffer at the first gradient (the
// buffer is zero then, so momentum * buf vanishes).
// in:  T g, F lr, F sign, F wd if WD, F momentum if MOMENTUM, F damp if MOMENTUM
// out: T p, T buf if MOMENTUM
F d = sign * (F)g;
#if WD
d = d + wd * (F)p;
#endif
#if MOMENTUM
F b = momentum * (F)buf + damp * d;
buf = (T)b;
#if NESTEROV
d = d + momentum * b;
#else
d = b;
#endif
#endif
p = (T)((F)p - lr * d);
