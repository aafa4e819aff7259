"""The farmer's mobile web portal on the county's domain, under /m/: SMS login, the credit line
and why, consent, "my data", borrowing (three screens, confirmed by an SMS code) and my loans
(schedule, repay now, early payoff, prepayment). Server-rendered pages for a 360 × 640 phone
screen."""
