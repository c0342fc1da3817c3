// Nesterov's accelerated gradient in the lecture's notation, stored at the
// look-ahead point y = x + lr beta v where the gradient is taken:
//   v' = beta v - grad f(y);   x' = x + lr v';   y' = x' + lr beta v'
// which gives y' = y - lr grad f(y) + lr beta v'.
// lrbeta = lr beta is folded on the host.
// in:  T g, F lr, F beta, F lrbeta
// out: T p, T v
F gi = (F)g;
F vn = beta * (F)v - gi;
v = (T)vn;
p = (T)((F)p - lr * gi + lrbeta * vn);
