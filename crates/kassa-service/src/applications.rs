//! Applications: a customer asks for a credit card or a higher limit; a
//! manager approves (setting the limit) or rejects with a reason.
